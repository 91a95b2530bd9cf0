/**
 * The live dashboard: GET /dashboard (the page) and GET /dashboard/events (its server-sent
 * events). The page draws the KV pool as a block map, the queues, and tokens/s and latency over
 * the last minutes (history.ts), updated a few times a second (feed.ts).
 *
 * With an API key set, the dashboard is behind it like every other route. A browser cannot add a
 * Bearer header to a page load or an EventSource, so these paths also accept HTTP Basic
 * credentials whose password is the key (any user name), and challenge with Basic: the browser
 * asks once and sends them with every request of the page.
 */
import type { FastifyInstance } from 'fastify';
import type { AsyncEngine } from '../../engine/async-engine.js';
import { DashboardFeed } from './feed.js';
import { DashboardHistory } from './history.js';
import { DASHBOARD_HTML } from './page.js';

const DASHBOARD_PATH = '/dashboard';
const EVENTS_PATH = `${DASHBOARD_PATH}/events`;

/** The challenge a 401 on a dashboard path carries, so browsers ask for the key. */
export const DASHBOARD_CHALLENGE = 'Basic realm="pagewise dashboard", charset="UTF-8"';

export function isDashboardPath(path: string): boolean {
  return path === DASHBOARD_PATH || path === EVENTS_PATH;
}

/**
 * The password of a Basic `Authorization` header, rewritten as a Bearer header, so the server's
 * one key check judges it; anything else comes back unchanged.
 */
export function basicAsBearer(header: string | undefined): string | undefined {
  const m = typeof header === 'string' ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header.trim()) : null;
  if (!m) return header;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : `Bearer ${decoded.slice(colon + 1)}`;
}

/** Add the dashboard's routes; it records history from now on and streams only while watched. */
export function registerDashboard(app: FastifyInstance, engine: AsyncEngine, model: string): void {
  const history = new DashboardHistory(engine.lastStats, Date.now());
  const feed = new DashboardFeed(engine, history, model);
  const unsubscribe = [engine.on('stats', (s) => history.onStats(s, Date.now())), engine.on('finished', (o) => history.onFinished(o, Date.now()))];

  app.get(DASHBOARD_PATH, async (_request, reply) =>
    reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-cache').send(DASHBOARD_HTML),
  );
  app.get(EVENTS_PATH, async (_request, reply) => {
    reply.hijack();
    feed.add(reply.raw);
  });
  app.addHook('onClose', async () => {
    for (const off of unsubscribe) off();
    feed.close();
  });
}
