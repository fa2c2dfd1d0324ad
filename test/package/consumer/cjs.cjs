const express = require('express');
const session = require('express-session');
const passwordless = require('express-passwordless');
const { MemoryStore, Passwordless, PasswordlessError } = require('express-passwordless');

if (!(passwordless instanceof Passwordless) || passwordless.default !== passwordless)
  throw new Error('require() shape');
import('./flow.mjs')
  .then(({ flow }) => flow({ passwordless, MemoryStore, PasswordlessError, express, session }))
  .then((result) => console.log(result))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
