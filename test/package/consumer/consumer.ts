// Type-checks against the shipped .d.ts: named types, overloads, and the shape of errors.
import type { Request } from 'express';
import passwordless, {
  type DeliveryContext,
  ERROR_CODES,
  type GetUserId,
  MemoryStore,
  Passwordless,
  PasswordlessError,
  type PasswordlessErrorCode,
  type TokenStore,
} from 'express-passwordless';
import { tokenStoreContract } from 'express-passwordless/testing';

const store: TokenStore = new MemoryStore({ sweepInterval: 1000 });
passwordless.init(store, { secret: 'x'.repeat(32), storeTimeout: 500 });
const getUserId: GetUserId = async (user: string, _delivery: string | undefined, _req: Request) =>
  user.includes('@') ? { uid: 1, recipient: user } : null;
passwordless.addDelivery(
  'email',
  async (ctx: DeliveryContext) => {
    const when: Date = ctx.expiresAt;
    const kind: 'link' | 'code' = ctx.kind;
    void when;
    void kind;
  },
  { ttl: 60_000 },
);
passwordless.requestToken(getUserId, { failureRedirect: '/login', failureFlash: 'no' });
passwordless.acceptToken({ successRedirect: '/', enableOriginRedirect: true });
const other = new Passwordless();
other.restricted({ failureRedirect: '/login', originField: 'origin' });
const code: PasswordlessErrorCode = ERROR_CODES[0];
const err = new PasswordlessError(code, 'x');
const c: string = err.code;
void c;
void tokenStoreContract;
// @ts-expect-error: unknown option names are type errors too
passwordless.init(store, { sucessRedirect: '/' });
