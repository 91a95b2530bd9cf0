/**
 * The one WGSL widening of an f16 (IEEE binary16) to f32 the kernels share: exact by bit
 * manipulation, subnormals included (unpack2x16float may flush them), so GPU weights equal the
 * CPU backend's widened values bit for bit.
 */
export const F16_TO_F32 = /* wgsl */ `
fn f16(h: u32) -> f32 {
  let e = (h >> 10u) & 31u;
  let m = h & 1023u;
  if (e == 0u) { return select(1.0, -1.0, (h & 0x8000u) != 0u) * f32(m) * 5.9604644775390625e-8; }
  if (e == 31u) { return bitcast<f32>(((h & 0x8000u) << 16u) | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(((h & 0x8000u) << 16u) | ((e + 112u) << 23u) | (m << 13u));
}`;
