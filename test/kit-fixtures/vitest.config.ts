import { defineConfig, mergeConfig } from 'vitest/config';
import base from '../../vitest.config.js';

// Runs the contract kit against deliberately broken stores; test/unit/contract-kit.test.ts asserts that it fails them.
export default mergeConfig(base, defineConfig({ test: { include: ['test/kit-fixtures/*.fixture.ts'] } }));
