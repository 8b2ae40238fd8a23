/**
 * Writes the UCI German Credit split (read from ../shared/data/credit, never copied into the repo) as the files a
 * `safehouse train` walkthrough needs: `node examples/german.ts DIR` →
 *   DIR/gc_provider.schema.json, DIR/gc_provider.csv (the provider's table), DIR/labels.csv (the bank's labels),
 *   DIR/consents.csv (train + score for purpose model_training), DIR/fields.txt (the --fields argument).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { germanSplit } from '../models/german.ts';

const dir = process.argv[2] ?? 'gc';
mkdirSync(dir, { recursive: true });
const gc = germanSplit({ seed: 7, providers: 1 });
const p = gc.providers[0]!;
const schema = p.schema as { category: string; fields: Array<{ name: string }> };
writeFileSync(join(dir, `${p.provider}.schema.json`), JSON.stringify(p.schema, null, 2) + '\n');
writeFileSync(join(dir, `${p.provider}.csv`), p.csv);
writeFileSync(join(dir, 'labels.csv'), gc.labelsCsv);
writeFileSync(
  join(dir, 'consents.csv'),
  'uscc,bank,purpose,categories,ops,days\n' +
    gc.subjects.map((u) => `${u},bank_gc,model_training,${schema.category},train;score,365`).join('\n') +
    '\n',
);
writeFileSync(join(dir, 'fields.txt'), schema.fields.map((f) => `${p.provider}.${f.name}`).join(',') + '\n');
process.stdout.write(
  `wrote ${dir}/: provider ${p.provider} (${schema.fields.length} fields), ${gc.subjects.length} labeled subjects\n`,
);
