// The little of passwordless 1.1.3 and passwordless-redisstore 1.0.2 (plain JavaScript, no types) the bench uses.

declare module 'passwordless' {
  import type { Request, RequestHandler } from 'express';

  type Callback = (err?: unknown) => void;
  interface Passwordless {
    init(store: unknown, options?: { userProperty?: string; allowTokenReuse?: boolean }): void;
    addDelivery(
      send: (token: string, uid: string, recipient: string, callback: Callback, req: Request) => void,
      options?: { ttl?: number },
    ): void;
    requestToken(
      getUserId: (
        user: string,
        delivery: string | undefined,
        callback: (err: unknown, uid?: string) => void,
      ) => void,
      options?: Record<string, unknown>,
    ): RequestHandler;
    acceptToken(options?: { successRedirect?: string }): RequestHandler;
    restricted(options?: Record<string, unknown>): RequestHandler;
    sessionSupport(): RequestHandler;
  }
  const passwordless: Passwordless;
  export default passwordless;
}

declare module 'passwordless-redisstore' {
  export default class RedisStore {
    constructor(
      port?: number,
      host?: string,
      options?: { redisstore?: { database?: number; tokenkey?: string } },
    );
    _client: { quit(callback: () => void): void };
  }
}
