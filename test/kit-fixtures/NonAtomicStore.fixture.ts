import { tokenStoreContract } from 'express-passwordless/testing';
import { NonAtomicStore } from './broken-stores.js';

tokenStoreContract('NonAtomicStore', () => new NonAtomicStore(), { expiryWaitMs: 150 });
