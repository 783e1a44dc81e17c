/** ASTM E1381/E1394 driver: public surface (no side effects). */
export { AstmDriver, DRIVER_NAME, type AstmDriverOptions, type AstmDriverHooks, type AstmTransportOptions } from './astm-driver';
export { AstmLink, AstmSendError, type LinkEvent, type LinkHandlers, type LinkState } from './link';
export { DEFAULT_LINK_OPTIONS, type LinkOptions } from './link-options';
export { realClock, ManualClock, type LinkClock } from './link-clock';
export { checksum, encodeFrame, encodeFrames, parseFrame, type ParsedFrame, type NakReason } from './frame';
export { parseRecords, unescape, type AstmMessage, type AstmRecord, type Delimiters } from './records';
export { parseAstmMessage, parseResults, type AstmHostQuery, type ParsedAstm } from './results-parser';
export { buildOrderResponse, type AstmOrder } from './order-response';
export { loadProfiles, validateProfile, checkProfileDir, normalizeProfile, defaultProfile, type AstmProfile } from './profile';
