import { tokenStoreContract } from 'express-passwordless/testing';
import { NeverExpiringStore } from './broken-stores.js';

tokenStoreContract('NeverExpiringStore', () => new NeverExpiringStore(), { expiryWaitMs: 150 });
