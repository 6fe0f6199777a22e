/** Public surface of the tdxfer v1 wire codec (pure: no sockets, no files). */
export * from './errors.js';
export * from './messages.js';
export * from './frames.js';
export * from './auth.js';
