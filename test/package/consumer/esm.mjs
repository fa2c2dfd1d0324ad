import express from 'express';
import passwordless, { MemoryStore, Passwordless, PasswordlessError } from 'express-passwordless';
import session from 'express-session';
import { flow } from './flow.mjs';

if (!(passwordless instanceof Passwordless)) throw new Error('default export is not an instance');
console.log(await flow({ passwordless, MemoryStore, PasswordlessError, express, session }));
