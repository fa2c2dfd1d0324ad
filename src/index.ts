import { Passwordless } from './passwordless.js';

// The default export is a ready instance, so `import passwordless from 'express-passwordless'` works as 1.x did.
const passwordless: Passwordless = new Passwordless();
export default passwordless;

// API mode's answers and error values.
export type { JsonErrorCode, TokenResponse } from './api-mode.js';
// The one error class and its codes, for `instanceof` and `switch (err.code)` in error handlers.
export { ERROR_CODES, PasswordlessError, type PasswordlessErrorCode } from './errors.js';
// The embedded default store.
export { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
// The class, for independent instances (one per app, or per test).
export { Passwordless } from './passwordless.js';
// Exposed so apps can check their own redirect targets the same way the library does.
export { isSafeRedirect } from './redirect.js';
export type {
  AcceptTokenOptions,
  BearerSupportOptions,
  ConfirmationPageContext,
  ConsumeFailure,
  ConsumeOptions,
  ConsumeResult,
  DeliveryContext,
  DeliveryOptions,
  FailureBudget,
  GetUserId,
  InitOptions,
  JwtOptions,
  LogoutOptions,
  PasswordlessRequestInfo,
  PreviousJwtKey,
  RefreshFamily,
  RefreshRotation,
  RequestTokenOptions,
  RestrictedOptions,
  RotateFailure,
  RotateResult,
  SendToken,
  StoreResult,
  TokenRecord,
  TokenStore,
  UserIdResult,
  UserIdWithRecipient,
} from './types.js';
