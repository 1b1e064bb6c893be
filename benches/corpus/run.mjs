// The corpus of scripts/bench through @openfeature/flagd-core (the JS in-process evaluator).
//   node run.mjs CORPUS.json SECONDS_PER_CLASS
// Prints one JSON line: ns per evaluation per class and for all cases interleaved.
// Loaded from the working directory's node_modules (scripts/bench installs it there).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(join(process.cwd(), 'noop.js'));
const { FlagdCore } = require('@openfeature/flagd-core');
const version = require('@openfeature/flagd-core/package.json').version;

const [corpusPath, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || '1');
const corpus = JSON.parse(readFileSync(corpusPath, 'utf8'));
const quiet = { error() {}, warn() {}, info() {}, debug() {} };
const core = new FlagdCore(undefined, quiet);
core.setConfigurations(corpus.document);

const cases = corpus.cases.map((c) => ({ ...c, defaultValue: c.type === 'boolean' ? false : '' }));
let sink = 0;
function evaluate(c) {
  try {
    const r = c.type === 'boolean'
      ? core.resolveBooleanEvaluation(c.flag, c.defaultValue, c.context, quiet)
      : core.resolveStringEvaluation(c.flag, c.defaultValue, c.context, quiet);
    if (r.value) sink++;
  } catch (e) {
    sink--;
  }
}

// Runs passes over `list` for about `budget` seconds; ns per evaluation.
function measure(list, budget) {
  const deadline = process.hrtime.bigint() + BigInt(Math.round(budget * 1e9));
  const start = process.hrtime.bigint();
  let n = 0;
  let now = start;
  do {
    for (const c of list) evaluate(c);
    n += list.length;
    now = process.hrtime.bigint();
  } while (now < deadline);
  return Number(now - start) / n;
}

const result = { evaluator: 'js', version: `@openfeature/flagd-core ${version}`, classes: {} };
measure(cases, seconds); // warm-up (JIT)
for (const cls of corpus.classes) {
  result.classes[cls] = measure(cases.filter((c) => c.class === cls), seconds);
}
result.interleaved = measure(cases, seconds);
result.sink = sink;
console.log(JSON.stringify(result));
