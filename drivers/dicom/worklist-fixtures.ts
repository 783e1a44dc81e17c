/** Test fixtures for the worklist / MPPS tests, the e2e test and the bench (fictional patients). */

/** ORM^O01 (v2.3.1, dcm4chee mapping protocols.md §5.3) for one CT order; fictional patient. */
export function ormCt(o: { ctrl: string; control?: string; order: string; acc: string; name?: string; pid?: string; date?: string; modality?: string; sps?: string; rp?: string }): string {
  const seg = (f: string[]) => f.join('|');
  const obr = new Array<string>(25).fill('');
  obr[0] = 'OBR';
  obr[1] = '1';
  obr[2] = o.order;
  obr[3] = o.order;
  obr[4] = 'CTCHEST^CT ngực không cản quang^99RIS^CT-PROTO-7^Chest w/o contrast^99GW';
  obr[16] = 'BS01^Phạm^Minh^Đức';
  obr[18] = o.acc;
  obr[19] = o.rp ?? `RP-${o.order}`;
  obr[20] = o.sps ?? `SPS-${o.order}`;
  obr[24] = o.modality ?? 'CT';
  return [
    `MSH|^~\\&|HIS|BV_DEMO|IOMT-GW|RIS|20250301094500+0700||ORM^O01|${o.ctrl}|P|2.3.1|||AL|NE|VNM|UNICODE UTF-8`,
    `PID|1||${o.pid ?? 'BN0067890'}^^^BV_DEMO^MR||${o.name ?? 'Nguyễn^Văn An'}||19790130|M`,
    // PV1-8 referring doctor, PV1-19 visit number
    ['PV1', '1', 'O', 'CDHA^^^BV_DEMO', '', '', '', '', 'BS02^Lê^Thị^Hoa', '', '', '', '', '', '', '', '', '', '', 'VN2025-0001'].join('|'),
    seg(['ORC', o.control ?? 'NW', o.order, o.order, '', '', '', `^^^${o.date ?? '20250301100000'}^^R`, '', '20250301094500']),
    seg(obr),
  ].join('\r');
}
