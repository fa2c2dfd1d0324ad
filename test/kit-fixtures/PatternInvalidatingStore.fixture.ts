import { tokenStoreContract } from 'express-passwordless/testing';
import { PatternInvalidatingStore } from './broken-stores.js';

tokenStoreContract('PatternInvalidatingStore', () => new PatternInvalidatingStore(), { expiryWaitMs: 150 });
