// Records every optional dependency in package-lock.json, even those the registry mirror of this workplace does not
// serve (other platforms' prebuilt binaries of biome, rollup, esbuild…). npm omits them from the lock when it cannot
// resolve them, and `npm ci` then refuses the lock as "out of sync". Recorded as optional, npm ci skips the ones it
// cannot fetch or does not need on this platform. Run after every dependency change: `npm run lockfile`.
const fs = require('node:fs');

const file = 'package-lock.json';
const lock = JSON.parse(fs.readFileSync(file, 'utf8'));
const packages = lock.packages;
let added = 0;
for (const [path, meta] of Object.entries({ ...packages })) {
  for (const [name, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const nested = `${path ? `${path}/` : ''}node_modules/${name}`;
    if (packages[`node_modules/${name}`] || packages[nested]) continue;
    packages[`node_modules/${name}`] = { version, dev: true, optional: true };
    added += 1;
  }
}
fs.writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`complete-lockfile: recorded ${added} optional dependencies the registry did not resolve`);
