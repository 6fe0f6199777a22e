/** Public surface of the config module. */
export type * from './types.js';
export { loadConfig, prepareConfig, readConfigFile, resolveConfigPath, parseJsonText, BUILT_IN, type LoadOptions } from './load.js';
export { resolveConfig, resolvePath, type KeySpec, type UnkeyedConfig } from './resolve.js';
export {
  DEFAULTS,
  DEFAULT_PORT,
  DEFAULT_STATUS_PORT,
  KEY_FILE_NAME,
  ZERO_CONFIG_INBOX,
  defaultAgentName,
  defaultDataDir,
  defaultKeyFile,
  defaultStaging,
} from './defaults.js';
export { KEY_BYTES, decodeKey, encodeKey, generateKey, obtainKey, peekKey, writeKeyFile, type KeyResult } from './key.js';
export { configSchema, NAME_PATTERN, type RawConfig } from './schema.js';
export { isIpOrCidr, isLoopbackHost } from './checks.js';
export { ConfigErrors, formatPath, formatValue, closest, levenshtein } from './messages.js';
