// The page under test (bundled by tests/browser/run.js with esbuild): an app on its own origin
// that reaches flagpole through an OpenFeature web provider and shows what it gets.
//
// Query: provider=flagd|ofrep, host, port (flagd-web: Connect on the evaluation port),
// ofrep (OFREP base URL), poll (OFREP poll interval, ms), email (the page's context).
// Everything shown is also in <pre id="state"> as JSON, which the runner reads back.
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { FlagdWebProvider } from '@openfeature/flagd-web-provider';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const params = new URLSearchParams(window.location.search);
const kind = params.get('provider');
const FLAGS = [
  ['boolean', 'browser-boolean', false],
  ['string', 'browser-string', 'code default'],
  ['number', 'browser-number', 0],
  ['object', 'browser-object', {}],
  ['string', 'browser-targeted', 'code default'],
];
const state = { provider: kind, status: 'starting', error: null, context: {}, events: [], flags: {} };
const client = OpenFeature.getClient();

function evaluate(type, key, fallback) {
  switch (type) {
    case 'boolean':
      return client.getBooleanDetails(key, fallback);
    case 'number':
      return client.getNumberDetails(key, fallback);
    case 'object':
      return client.getObjectDetails(key, fallback);
    default:
      return client.getStringDetails(key, fallback);
  }
}

function render() {
  for (const [type, key, fallback] of FLAGS) {
    const { value, variant, reason, errorCode } = evaluate(type, key, fallback);
    state.flags[key] = { value, variant: variant ?? null, reason: reason ?? null, errorCode: errorCode ?? null };
  }
  document.getElementById('provider').textContent = kind;
  document.getElementById('status').textContent = state.status;
  const table = document.getElementById('flags');
  table.replaceChildren(
    ...Object.entries(state.flags).map(([key, d]) => {
      const row = document.createElement('tr');
      for (const text of [key, JSON.stringify(d.value), d.variant, d.reason]) {
        const cell = document.createElement('td');
        cell.textContent = text ?? '';
        row.append(cell);
      }
      return row;
    }),
  );
  const events = document.getElementById('events');
  events.replaceChildren(
    ...state.events.map((e) => {
      const item = document.createElement('li');
      item.textContent = `${e.type}${e.flagsChanged ? ` ${e.flagsChanged.join(',')}` : ''}`;
      return item;
    }),
  );
  document.getElementById('state').textContent = JSON.stringify(state, null, 2);
}

function provider() {
  if (kind === 'flagd') {
    return new FlagdWebProvider({
      host: params.get('host'),
      port: Number(params.get('port')),
      tls: false,
      // A refused origin should surface as an error, not as endless retries.
      maxRetries: -1,
      maxDelay: 1000,
    });
  }
  if (kind === 'ofrep') {
    return new OFREPWebProvider({
      baseUrl: params.get('ofrep'),
      pollInterval: Number(params.get('poll') ?? 500),
      changeDetection: 'polling',
      cacheMode: 'disabled',
    });
  }
  throw new Error(`unknown provider ${kind}`);
}

for (const [name, type] of [
  ['ready', ProviderEvents.Ready],
  ['error', ProviderEvents.Error],
  ['stale', ProviderEvents.Stale],
  ['changed', ProviderEvents.ConfigurationChanged],
  ['context-changed', ProviderEvents.ContextChanged],
]) {
  client.addHandler(type, (details) => {
    state.events.push({ type: name, flagsChanged: details?.flagsChanged ?? null, message: details?.message ?? null });
    // flagd-web's initialize() never settles when it cannot connect: the error event says so.
    if (name === 'error' && state.status === 'starting') state.status = 'error';
    render();
  });
}

// Called by the runner: the page's user changes (targeting from the page's context).
window.setEmail = async (email) => {
  state.context = { targetingKey: 'page-user', email };
  await OpenFeature.setContext({ ...state.context });
  render();
};

async function main() {
  state.context = { targetingKey: 'page-user', email: params.get('email') ?? '' };
  await OpenFeature.setContext({ ...state.context });
  try {
    await OpenFeature.setProviderAndWait(provider());
    state.status = 'ready';
  } catch (error) {
    state.status = 'error';
    state.error = String(error?.message ?? error);
  }
  render();
}

render();
main();
