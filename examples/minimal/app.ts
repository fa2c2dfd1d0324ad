// The smallest complete magic-link login: MemoryStore, and the development outbox as delivery — the link is
// printed to the console and listed at /outbox. Run it from the repository root with `npm start`.
import express from 'express';
import passwordless, { MemoryStore } from 'express-passwordless';
import { devOutbox } from 'express-passwordless/delivery/outbox';
import session from 'express-session';

const port = Number(process.env.PORT ?? 3000);
const baseUrl = process.env.APP_URL ?? `http://localhost:${port}`;

// The outbox refuses to start under NODE_ENV=production: its page would list live login links.
const outbox = devOutbox({ baseUrl: `${baseUrl}/login` });
passwordless.init(new MemoryStore());
passwordless.addDelivery(async (ctx) => {
  await outbox.send(ctx);
  const [message] = outbox.messages;
  console.log(`\nLogin link for ${ctx.recipient}:\n  ${message?.link}\n(also listed at ${baseUrl}/outbox)\n`);
});

const app = express();
app.use(
  session({
    secret: process.env.SESSION_SECRET ?? 'development only: set SESSION_SECRET',
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: 'lax', maxAge: 7 * 24 * 3600_000 },
  }),
);
app.use(express.urlencoded({ extended: false }));
app.use('/outbox', outbox.router());
app.use(passwordless.sessionSupport());
app.use(passwordless.acceptToken({ successRedirect: '/' }));

const page = (body: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Magic link demo</title>
<style>body{font:16px system-ui;max-width:32rem;margin:3rem auto;padding:0 1rem}input,button{font:inherit;padding:.4rem}</style>
</head><body>${body}</body></html>`;
const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

app.get('/', (req, res) => {
  const user = (req as unknown as { user?: string }).user;
  res.send(
    page(
      user
        ? `<h1>Hello, ${escapeHtml(user)}</h1><p><a href="/restricted">Restricted page</a> · <a href="/logout">Log out</a></p>`
        : `<h1>Log in</h1><form method="post" action="/sendtoken">
<label>Email <input name="user" type="email" required autocomplete="email"></label> <button>Send link</button></form>`,
    ),
  );
});

// Any address is accepted here; a real app looks the user up and returns their id (or null).
app.post(
  '/sendtoken',
  passwordless.requestToken((user) => user.trim().toLowerCase()),
  (_req, res) => {
    res.send(
      page(
        '<h1>Check your (development) inbox</h1><p>The login link was printed where you ran <code>npm start</code> ' +
          'and is listed in the <a href="/outbox">outbox</a>.</p>',
      ),
    );
  },
);

app.get('/login', (_req, res) => res.redirect('/'));
app.get('/restricted', passwordless.restricted({ failureRedirect: '/' }), (req, res) => {
  res.send(
    page(
      `<h1>Restricted</h1><p>Only ${escapeHtml(String((req as unknown as { user: string }).user))} sees this.</p><p><a href="/">Home</a></p>`,
    ),
  );
});
app.get('/logout', passwordless.logout(), (_req, res) => res.redirect('/'));

app.listen(port, () =>
  console.log(`Magic-link example: open ${baseUrl} (MemoryStore; links printed here and at /outbox)`),
);
