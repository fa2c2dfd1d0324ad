// The single-page client of the API example: plain JavaScript, no framework, no build step, nothing from elsewhere.
//
// Where the tokens live, and why:
// - The access token (a JWT good for 15 minutes) lives only in this module's memory. It is sent as
//   `Authorization: Bearer …`, never in a cookie (so no other site can make the browser send it) and never in a URL.
//   A reload loses it: the refresh token gets a new one.
// - The refresh token lives in sessionStorage: it survives a reload of this tab, and is gone when the tab closes;
//   other tabs never see it. A script running in this page could read it (as it could read memory): the page's
//   Content-Security-Policy, which runs this site's own scripts only, is what keeps such scripts out. Never
//   localStorage: that stays on disk, for every future visit. A copy used after this tab refreshed is a spent token,
//   and the server then revokes the whole login (the thief's copy and this tab's).
// - A mobile app keeps the refresh token in the iOS Keychain (kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly) or
//   in an Android Keystore-backed store (EncryptedSharedPreferences / DataStore with a Keystore key), and the access
//   token in memory; never in plain preferences, files, logs or crash reports.

const REFRESH_KEY = 'api-example.refreshToken';

/** The access token and when it expires (ms since 1970); memory only. */
let access;
/** The uid whose code was sent: the address as the server normalises it (trimmed, lower-cased). */
let pendingUid;
/** The refresh in flight, shared by every caller (see refresh()). */
let refreshing;

const $ = (id) => document.getElementById(id);

const MESSAGES = {
  invalid_request: 'The request was not understood. Check what you entered.',
  unknown_user: 'Please enter a valid email address, like name@example.com.',
  invalid_token:
    'That code is not right, or no longer valid: a code works for 10 minutes and 5 tries. Check it, or send a new code.',
  invalid_grant: 'Your login has ended. Please log in again.',
  temporarily_unavailable: 'The service is unavailable for a moment. Please try again.',
};

/** A sentence for a failed answer of the API. */
function describe(res) {
  if (res.body.error === 'too_many_requests') {
    const seconds = Number(res.retryAfter);
    const wait = seconds > 90 ? `${Math.ceil(seconds / 60)} minutes` : `${seconds || 60} seconds`;
    return `Too many attempts. Please wait ${wait} and try again.`;
  }
  return MESSAGES[res.body.error] ?? `The server answered ${res.status}. Please try again.`;
}

// ---- the page ---------------------------------------------------------------------------------------------------

function show(step) {
  for (const id of ['loading', 'email-step', 'code-step', 'account']) $(id).hidden = id !== step;
  $('who').hidden = step !== 'account';
}

function say(text) {
  $('error').hidden = true;
  $('notice').textContent = text;
  $('notice').hidden = false;
}

function complain(text) {
  $('notice').hidden = true;
  $('error').textContent = text;
  $('error').hidden = false;
}

function quiet() {
  $('notice').hidden = true;
  $('error').hidden = true;
}

function showEmailStep() {
  show('email-step');
  $('email').focus();
}

function showCodeStep(uid) {
  pendingUid = uid;
  $('code-email').textContent = uid;
  show('code-step');
  $('code').focus();
}

function showAccount(uid) {
  for (const id of ['who-uid', 'account-uid', 'me-uid']) $(id).textContent = uid;
  $('access-expiry').textContent = access
    ? `in memory; expires at ${new Date(access.expiresAt).toLocaleTimeString()}`
    : 'none yet';
  show('account');
}

function showLoggedOut(message, isError) {
  forget();
  $('code').value = '';
  showEmailStep();
  if (isError) complain(message);
  else say(message);
}

/** Disables the form's buttons while `work` runs. */
async function busy(form, work) {
  const buttons = [...form.querySelectorAll('button')];
  for (const b of buttons) b.disabled = true;
  try {
    await work();
  } catch {
    complain('The server cannot be reached. Please try again.');
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

// ---- the API ----------------------------------------------------------------------------------------------------

async function call(method, path, body, token) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  let json = {};
  try {
    if (res.status !== 204) json = await res.json();
  } catch {
    // Not JSON (restricted() answers a plain-text 401 when no token was sent at all).
  }
  return { status: res.status, body: json, retryAfter: res.headers.get('retry-after') };
}

function keep(tokens) {
  access = { token: tokens.accessToken, expiresAt: Date.now() + tokens.expiresIn * 1000 };
  sessionStorage.setItem(REFRESH_KEY, tokens.refreshToken);
}

function forget() {
  access = undefined;
  sessionStorage.removeItem(REFRESH_KEY);
}

/**
 * A new token pair for the refresh token. One at a time: callers that come while a refresh runs share it, since a
 * second refresh with the same token would look like a stolen copy and revoke the login. Resolves true with new
 * tokens, false when the login has ended (spent, revoked or expired: log in again); throws when the server is
 * unavailable (the refresh token is kept, to try again later).
 */
function refresh() {
  refreshing ??= (async () => {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return false;
    const res = await call('POST', '/auth/refresh', { refreshToken });
    if (res.status === 200) {
      keep(res.body);
      return true;
    }
    if (res.status === 400 || res.status === 401) {
      forget();
      return false;
    }
    throw new Error(describe(res));
  })().finally(() => {
    refreshing = undefined;
  });
  return refreshing;
}

/** Calls the API with the access token; on a 401 (expired, or none after a reload), refreshes once and retries. */
async function withAccess(request) {
  const first = await request(access?.token);
  if (first.status !== 401 || !(await refresh())) return first;
  return request(access?.token);
}

/** GET /api/me, and shows its answer. */
async function loadMe() {
  const res = await withAccess((token) => call('GET', '/api/me', undefined, token));
  $('last').textContent = `${res.status} ${JSON.stringify(res.body, null, 2)}`;
  if (res.status === 200) return showAccount(res.body.uid);
  if (res.status === 401) return showLoggedOut(MESSAGES.invalid_grant, true);
  complain(describe(res));
}

async function logout(everywhere) {
  const refreshToken = sessionStorage.getItem(REFRESH_KEY) ?? undefined;
  let res;
  if (everywhere) {
    // Needs a live access token: refreshed first if it has expired.
    res = await withAccess((token) => call('POST', '/auth/logout-everywhere', {}, token));
  } else {
    res = await call('POST', '/auth/logout', { refreshToken }, access?.token);
    // An expired access token is refused (401): the refresh token alone names this login.
    if (res.status === 401) res = await call('POST', '/auth/logout', { refreshToken });
  }
  // Whatever the server answers about a login that has already ended, this tab forgets both tokens.
  if (res.status === 204 || res.status === 401) {
    return showLoggedOut(everywhere ? 'You are logged out on every device.' : 'You are logged out.', false);
  }
  complain(describe(res));
}

// ---- the steps ----------------------------------------------------------------------------------------------------

$('email-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const typed = $('email').value;
  busy(event.currentTarget, async () => {
    const res = await call('POST', '/auth/request', { user: typed });
    if (res.status !== 202) return complain(describe(res));
    // 202 {} names no uid: it is the address, normalised as the server does.
    $('code').value = '';
    showCodeStep(typed.trim().toLowerCase());
    say('We sent you a code.');
  });
});

$('code-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('code').value.trim();
  busy(event.currentTarget, async () => {
    const res = await call('POST', '/auth/accept', { uid: pendingUid, token });
    if (res.status !== 200) return complain(describe(res));
    keep(res.body);
    say('You are logged in.');
    await loadMe();
  });
});

$('other-address').addEventListener('click', () => {
  quiet();
  showEmailStep();
});

for (const [id, work] of [
  [
    'call-me',
    async () => {
      await loadMe();
    },
  ],
  [
    'refresh',
    async () => {
      if (!(await refresh())) return showLoggedOut(MESSAGES.invalid_grant, true);
      say(`New tokens: the access token now expires at ${new Date(access.expiresAt).toLocaleTimeString()}.`);
      await loadMe();
    },
  ],
  ['logout', () => logout(false)],
  ['logout-everywhere', () => logout(true)],
]) {
  $(id).addEventListener('click', () =>
    busy($('account'), async () => {
      try {
        await work();
      } catch (err) {
        complain(err.message);
      }
    }),
  );
}

/**
 * The outbox's link (what a universal link would open in a mobile app) carries ?token=…&uid=…: the code is filled
 * in, and the query is removed from the address bar and history at once. Nothing is consumed before "Log in".
 */
function fromLink() {
  const query = new URLSearchParams(location.search);
  const token = query.get('token');
  const uid = query.get('uid');
  if (query.size > 0) history.replaceState(null, '', location.pathname);
  return token && uid && /^\d{6}$/.test(token) ? { token, uid } : undefined;
}

async function start() {
  const link = fromLink();
  if (link) {
    forget();
    $('code').value = link.token;
    return showCodeStep(link.uid);
  }
  if (!sessionStorage.getItem(REFRESH_KEY)) return showEmailStep();
  // A reload: the access token is gone with the old page; the refresh token in sessionStorage gets a new pair.
  try {
    if (await refresh()) return await loadMe();
    showLoggedOut(MESSAGES.invalid_grant, true);
  } catch (err) {
    showEmailStep();
    complain(err instanceof TypeError ? 'The server cannot be reached. Please try again.' : err.message);
  }
}

start();
