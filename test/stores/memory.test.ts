import { MemoryStore } from 'express-passwordless';
import { tokenStoreContract } from 'express-passwordless/testing';

tokenStoreContract('MemoryStore', () => new MemoryStore({ sweepInterval: 20 }));
