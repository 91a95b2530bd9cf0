/**
 * Server-sent events over a raw Node response, in the form OpenAI's streaming API uses:
 * `data: <json>\n\n` per chunk and `data: [DONE]\n\n` at the end.
 */
import type { ServerResponse } from 'node:http';

export class SseWriter {
  private opened = false;

  constructor(private readonly res: ServerResponse) {}

  /** True once the client has gone (or the response was ended): stop producing chunks. */
  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** Node decides keep-alive vs close from the request; forcing `connection` here would break clients that asked to close. */
  open(headers: Record<string, string> = {}): void {
    if (this.opened) return;
    this.opened = true;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      ...headers,
    });
    this.res.flushHeaders();
  }

  /**
   * Write one event. Resolves when the socket can take more (backpressure), or at once if the
   * client is gone. The engine keeps merging snapshots meanwhile, so a slow reader costs no memory.
   */
  async send(data: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  async done(): Promise<void> {
    await this.write('data: [DONE]\n\n');
    if (!this.closed) this.res.end();
  }

  private async write(text: string): Promise<void> {
    if (this.closed) return;
    if (this.res.write(text)) return;
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        this.res.off('drain', finish);
        this.res.off('close', finish);
        resolve();
      };
      this.res.on('drain', finish);
      this.res.on('close', finish);
    });
  }
}
