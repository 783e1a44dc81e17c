import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from './gateway-store';
import { outboxContract } from './outbox-contract';

outboxContract('GatewayStore (SQLite)', async () => {
  const tmp = tempDir('iomt-outbox-');
  const store = GatewayStore.open({ dataDir: tmp.dir });
  return {
    store,
    async cleanup() {
      await store.close();
      tmp.cleanup();
    },
  };
});
