// UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter in `rand_a` so that
// ids minted in one page are strictly increasing (sorting a queue by uuid restores its order,
// even when the clock stalls or steps back), then 62 random bits.

export function uuidGenerator(fill) {
  let last = -1;
  let seq = 0;
  return function (now) {
    const r = new Uint8Array(10);
    fill(r);
    if (now > last) {
      last = now;
      seq = ((r[0] & 7) << 8) | r[1]; // a random start below 2048 leaves room to count up
    } else if (++seq > 4095) {
      last++;
      seq = 0;
    }
    const b = new Uint8Array(16);
    let t = last;
    for (let i = 5; i >= 0; i--) {
      b[i] = t % 256;
      t = Math.floor(t / 256);
    }
    b[6] = 0x70 | (seq >> 8);
    b[7] = seq & 255;
    b[8] = 0x80 | (r[2] & 0x3f);
    for (let i = 9; i < 16; i++) b[i] = r[i - 6];
    let h = '';
    for (let i = 0; i < 16; i++) h += (b[i] + 256).toString(16).slice(1);
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  };
}

