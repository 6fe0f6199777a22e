/** The outbox side: watching with settle detection, after-actions, the sent journal. */
export { OutboxWatcher, type OutboxWatcherEvents, type OutboxWatcherOptions, type ReadyFile } from './watcher.js';
export { SettleTracker, sameVersion, type DueFile, type FileVersion } from './settle.js';
export { applyAfter, archivePath, finishAfterBatch, newAfterBatch, removeEmptyParents, type AfterBatch, type AfterOptions, type AfterResult } from './after.js';
export { SentJournal, type JournalOpenOptions } from './journal.js';
