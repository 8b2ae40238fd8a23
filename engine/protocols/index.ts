/**
 * The protocols, registered in one place: each one's custodian rules (what a provider's custodian allows for it) and
 * its auditor replay. A new protocol adds its folder and one line in each table.
 */
import type { CustodianRules, JobKind } from '../custodian/rules.ts';
import type { ReplayContext } from '../audit/steps.ts';
import { scoreRules } from './score/custodian.ts';
import { verifyRules } from './verify/custodian.ts';
import { trainRules } from './train/custodian.ts';
import { replayScore, type StoredScore } from './score/replay.ts';
import { replayVerify, type StoredVerify } from './verify/replay.ts';
import { replayTrain, type StoredTrain } from './train/replay.ts';

/** Every protocol's rules, as each provider's custodian enforces them. */
export const CUSTODIAN_RULES: readonly CustodianRules[] = [scoreRules, verifyRules, trainRules];

/** Each job kind's auditor replay, given the job's stored material. */
export const REPLAYS: Readonly<Record<JobKind, (ctx: ReplayContext<never>) => Promise<void>>> = {
  score: (ctx) => replayScore(ctx as ReplayContext<StoredScore>),
  verify: (ctx) => replayVerify(ctx as ReplayContext<StoredVerify>),
  train: (ctx) => replayTrain(ctx as ReplayContext<StoredTrain>),
};
