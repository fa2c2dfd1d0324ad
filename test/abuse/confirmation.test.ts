import { MemoryStore } from 'express-passwordless';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';
import { createApp, EXPRESS_MAJORS, linkQuery, type TestApp } from '../helpers/create-app.js';

async function tokenFor(t: TestApp, user = 'ann@example.com') {
  await request(t.app).post('/sendtoken').type('form').send({ user }).expect(200);
  return t.outbox.last();
}

/** Reads the hidden inputs of the confirmation form. */
function formOf(html: string): { action: string; fields: Record<string, string> } {
  const action = /<form method="post" action="([^"]*)"/.exec(html)?.[1] ?? '';
  const fields: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    fields[m[1]!] = m[2]!.replace(/&#(\d+);/g, (_, c) => String.fromCharCode(Number(c)));
  }
  return { action, fields };
}

describe.each(EXPRESS_MAJORS)('requireConfirmation on Express %i', (major) => {
  const make = () => {
    const store = new MemoryStore();
    const consume = vi.spyOn(store, 'consume');
    const t = createApp({
      express: major,
      store,
      accept: { requireConfirmation: true, successRedirect: '/welcome' },
    });
    return { ...t, consume };
  };

  it('ten GETs and HEADs consume and count nothing and show a page; then one POST logs in, once', async () => {
    const t = make();
    const ctx = await tokenFor(t);
    let page = '';
    for (let i = 0; i < 10; i++) {
      const res = await request(t.app)
        .get(`/login?${linkQuery(ctx)}`)
        .expect(200);
      page = res.text;
      expect(res.headers['content-type']).toMatch(/text\/html/);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['content-security-policy']).toMatch(/default-src 'none'/);
      await request(t.app).head(`/login?${linkQuery(ctx)}`);
    }
    expect(t.consume).not.toHaveBeenCalled();
    expect(page).toContain('a***@example.com');
    // The account is named masked; the full uid is only in the hidden field (it was in the link already).
    expect(page.replace(/<input[^>]*>/g, '')).not.toContain('ann@example.com');
    expect(page).not.toMatch(/<script|http-equiv|https?:\/\//i);
    const form = formOf(page);
    expect(form.action).toBe('/login');
    const agent = request.agent(t.app);
    const post = await agent
      .post(form.action)
      .type('form')
      .send(form.fields)
      .set('Origin', 'http://127.0.0.1')
      .set('Host', '127.0.0.1')
      .expect(302);
    expect(post.headers.location).toBe('/welcome');
    expect((await agent.get('/restricted').expect(200)).body.user).toBe('ann@example.com');
    expect(t.consume).toHaveBeenCalledTimes(1);
    // The token is used: a second POST logs nobody in.
    const again = await request(t.app).post(form.action).type('form').send(form.fields);
    expect(again.status).toBe(200);
    expect(again.body.user).toBeNull();
  });

  it('the token never travels in the URL of the POST', async () => {
    const t = make();
    const ctx = await tokenFor(t);
    const { action } = formOf((await request(t.app).get(`/login?${linkQuery(ctx)}`)).text);
    expect(action).not.toContain(ctx.token);
  });

  it.each([
    ['Sec-Fetch-Site: cross-site', { 'Sec-Fetch-Site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site (a sibling subdomain)', { 'Sec-Fetch-Site': 'same-site' }],
    ['an Origin of another host', { Origin: 'https://evil.example' }],
    ['Origin: null', { Origin: 'null' }],
  ])('a cross-site POST (%s) is refused with 403 and consumes nothing', async (_, headers) => {
    const t = make();
    const ctx = await tokenFor(t);
    const res = await request(t.app)
      .post('/login')
      .set(headers)
      .type('form')
      .send({ token: ctx.token, uid: ctx.uid });
    expect(res.status).toBe(403);
    expect(t.consume).not.toHaveBeenCalled();
    // Still valid for the user's own same-origin POST.
    const ok = await request(t.app)
      .post('/login')
      .set('Sec-Fetch-Site', 'same-origin')
      .type('form')
      .send({ token: ctx.token, uid: ctx.uid });
    expect(ok.status).toBe(302);
  });

  it('escapes hostile uids and tokens in the page', async () => {
    const t = createApp({
      express: major,
      getUserId: () => ({ uid: '<img src=x onerror=alert(1)>"', recipient: 'a@example.com' }),
      accept: { requireConfirmation: true },
    });
    await request(t.app).post('/sendtoken').type('form').send({ user: 'a@example.com' }).expect(200);
    const res = await request(t.app)
      .get(`/?${linkQuery(t.outbox.last())}`)
      .expect(200);
    expect(res.text).not.toContain('<img');
    expect(res.text).not.toContain('onerror=alert(1)>"');
  });

  it('confirmationPage customises the page', async () => {
    const t = createApp({
      express: major,
      accept: {
        requireConfirmation: true,
        confirmationPage: ({ maskedUid, action, hiddenInputs }) =>
          `<p>Hi ${maskedUid}</p><form method="post" action="${action}">${hiddenInputs}<button>Go</button></form>`,
      },
    });
    const ctx = await tokenFor(t);
    const res = await request(t.app)
      .get(`/?${linkQuery(ctx)}`)
      .expect(200);
    expect(res.text).toMatch(/^<p>Hi a\*\*\*@example.com<\/p>/);
  });

  it('confirmationPage without requireConfirmation is a setup error', () => {
    expect(() => createApp({ express: major, accept: { confirmationPage: () => '' } })).toThrow(
      /requireConfirmation/,
    );
  });
});
