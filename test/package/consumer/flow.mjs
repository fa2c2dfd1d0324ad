// Shared by the ESM and CJS consumers: a full login over HTTP against an app built from the installed package.
export async function flow({ passwordless, MemoryStore, PasswordlessError, express, session }) {
  const sent = [];
  passwordless.init(new MemoryStore());
  passwordless.addDelivery(async (ctx) => {
    sent.push(ctx);
  });
  const app = express();
  app.use(session({ secret: 'consumer test secret', resave: false, saveUninitialized: false }));
  app.use(express.urlencoded({ extended: false }));
  app.use(passwordless.sessionSupport());
  app.use(passwordless.acceptToken({ successRedirect: '/restricted' }));
  app.post(
    '/sendtoken',
    passwordless.requestToken((user) => (user === 'a@example.com' ? 'a1' : null)),
    (_req, res) => res.send('sent'),
  );
  app.get('/restricted', passwordless.restricted(), (req, res) => res.send(`hello ${req.user}`));
  app.get('/logout', passwordless.logout(), (_req, res) => res.send('bye'));
  let setupError;
  try {
    passwordless.restricted({ failureFlash: 'x' });
  } catch (err) {
    setupError = err;
  }
  if (!(setupError instanceof PasswordlessError) || setupError.code !== 'BAD_OPTIONS')
    throw new Error('no setup error');
  const server = app.listen(0);
  const base = `http://127.0.0.1:${server.address().port}`;
  let cookie = '';
  const go = async (path, init = {}) => {
    const res = await fetch(base + path, {
      redirect: 'manual',
      ...init,
      headers: { cookie, ...(init.headers ?? {}) },
    });
    const set = res.headers.get('set-cookie');
    if (set) cookie = set.split(';')[0];
    return res;
  };
  try {
    const form = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' } };
    if ((await go('/sendtoken', { ...form, body: 'user=nobody%40x.org' })).status !== 401)
      throw new Error('unknown user not 401');
    if ((await go('/sendtoken', { ...form, body: 'user[]=x' })).status !== 400)
      throw new Error('array user not 400');
    if ((await go('/sendtoken', { ...form, body: 'user=a%40example.com' })).status !== 200)
      throw new Error('request failed');
    const { token, uid } = sent[0];
    if ((await go('/restricted')).status !== 401) throw new Error('restricted before login');
    const login = await go(`/?token=${token}&uid=${uid}`);
    if (login.status !== 302 || login.headers.get('location') !== '/restricted')
      throw new Error(`login: ${login.status}`);
    const page = await go('/restricted');
    if (page.status !== 200 || (await page.text()) !== 'hello a1') throw new Error('not logged in');
    if ((await go(`/?token=${token}&uid=${uid}`)).headers.get('location')) throw new Error('token reused');
    await go('/logout');
    if ((await go('/restricted')).status !== 401) throw new Error('still logged in after logout');
  } finally {
    server.close();
  }
  return 'ok';
}
