export { fail, hasControl, optionalFunction, readOptions, show } from '../options.js';
