/**
 * One error hierarchy for the whole gateway. Branch on the class or `code`, never on message text.
 * Every code is listed in docs/errors.md.
 */
export class GatewayError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A device message could not be parsed (bad framing, bad segments, missing required fields). */
export class ParseError extends GatewayError {
  /** Where it failed, e.g. HL7 `OBX^3^5` (segment^sequence^field); ASTM `R^2^4`. */
  readonly location?: string;
  /** HL7 Table 0357 error code when it applies (100..207). */
  readonly hl7ErrorCode?: number;
  constructor(message: string, opts: { location?: string; hl7ErrorCode?: number; cause?: unknown; code?: string } = {}) {
    super(opts.code ?? 'GW_ERR_PARSE', message, { cause: opts.cause });
    this.location = opts.location;
    this.hl7ErrorCode = opts.hl7ErrorCode;
  }
}

/** Well-formed message of a type or version we do not handle (HL7 AR, Table 0357 200/201/203). */
export class UnsupportedMessageError extends GatewayError {
  readonly hl7ErrorCode: number;
  constructor(message: string, hl7ErrorCode = 200, options?: { cause?: unknown }) {
    super('GW_ERR_UNSUPPORTED', message, options);
    this.hl7ErrorCode = hl7ErrorCode;
  }
}

/** The store could not commit (disk full, quota, I/O error). Devices get a negative ack. */
export class StoreError extends GatewayError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'GW_ERR_STORE', message, options);
  }
}

/** Store is full (SQLITE_FULL or configured quota reached). */
export class StoreFullError extends StoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { ...options, code: 'GW_ERR_STORE_FULL' });
  }
}

/** Message exceeded a configured size limit. */
export class MessageTooLargeError extends GatewayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GW_ERR_TOO_LARGE', message, options);
  }
}

/** Configuration problem: every problem is collected and reported at once. */
export interface ConfigProblem {
  file: string;
  path: string;
  reason: string;
}
export class ConfigError extends GatewayError {
  readonly problems: ConfigProblem[];
  constructor(problems: ConfigProblem[]) {
    super('GW_ERR_CONFIG', problems.map((p) => `${p.file}: ${p.path}: ${p.reason}`).join('\n'));
    this.problems = problems;
  }
}

/** Delivery to a destination failed. `retryable` decides retry vs dead letter. */
export class DeliveryError extends GatewayError {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? (retryable ? 'GW_ERR_DELIVERY_RETRY' : 'GW_ERR_DELIVERY_REJECTED'), message, options);
    this.retryable = retryable;
  }
}

/** A peer did not answer in time. */
export class TimeoutError extends GatewayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GW_ERR_TIMEOUT', message, options);
  }
}
