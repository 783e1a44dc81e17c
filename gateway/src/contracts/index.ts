export * from './errors';
export * from './observation';
export * from './driver';
export * from './output';
export * from './store';
export * from './transport';
