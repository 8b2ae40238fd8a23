#!/usr/bin/env node
// Entry point for `npx safehouse`. The CLI is TypeScript run by Node's built-in type stripping, and node-seal 7's
// WASM needs WebAssembly exception handling: both need Node.js 24.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `SH_ERR_SEAL_RUNTIME: Safehouse needs Node.js >= 24 (this is ${process.version}); see README "Set-up"\n`,
  );
  process.exit(1);
}
const { run } = await import('../cli/index.ts');
await run(process.argv.slice(2));
