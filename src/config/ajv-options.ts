/**
 * ajv's options for the config schema, shared by the build-time generator of
 * validate.gen.ts (scripts/gen-config-validator.ts) and its up-to-date test: every error
 * (allErrors) with its data and schema (verbose), which messages.ts turns into field-naming
 * messages; no defaults written into the data (resolve.ts applies them).
 */
export const AJV_OPTIONS = { allErrors: true, useDefaults: false, allowUnionTypes: true, strict: true, verbose: true } as const;
