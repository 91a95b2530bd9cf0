/**
 * Accuracy of the quantized linear op's activation scheme (native/quant/act_quant.h) on the real
 * weights of the GGUF fixtures, against llama.cpp's int8 activation rounding (Q8_0 / Q8_K,
 * emulated in test/reference/ggml-quant.ts). Per op: mean |y - y64| over outputs, y64 the float64
 * product of the dequantized weights. Ours must be at least 3 times closer. Also checks the
 * dequantized quantized weights lie near the F32 file's (a wrong block layout would not).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cpuBackend } from '../src/backend/native.js';
import { GgmlType, ggmlRowBytes, ggmlTypeName } from '../src/backend/quant.js';
import { llamaQ8Activations, rng, typeInfo } from './reference/ggml-quant.js';
import { fixturePath } from './helpers/fixtures.js';

interface Tensor {
  type: GgmlType;
  ne: number[];
  data: Uint8Array;
}

/** Minimal GGUF v3 reader (test-local): tensor infos and data only, metadata skipped. */
function readGguf(path: string): Map<string, Tensor> {
  const buf = readFileSync(path);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = 0;
  const u32 = (): number => { const v = dv.getUint32(p, true); p += 4; return v; };
  const u64 = (): number => { const v = Number(dv.getBigUint64(p, true)); p += 8; return v; };
  const str = (): string => { const n = u64(); const s = buf.subarray(p, p + n).toString('utf8'); p += n; return s; };
  assert.equal(buf.subarray(0, 4).toString('latin1'), 'GGUF');
  p = 4;
  assert.equal(u32(), 3);
  const nt = u64(), nkv = u64();
  const sizes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  let alignment = 32;
  const skip = (t: number): number | undefined => {
    if (t === 8) { str(); return undefined; }
    if (t === 9) { const et = u32(), n = u64(); for (let i = 0; i < n; i++) skip(et); return undefined; }
    const v = t === 4 ? dv.getUint32(p, true) : undefined;
    p += sizes[t];
    return v;
  };
  for (let i = 0; i < nkv; i++) {
    const key = str();
    const v = skip(u32());
    if (key === 'general.alignment' && v !== undefined) alignment = v;
  }
  const infos: { name: string; ne: number[]; type: number; off: number }[] = [];
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(u64());
    infos.push({ name, ne, type: u32(), off: u64() });
  }
  const start = Math.ceil(p / alignment) * alignment;
  const out = new Map<string, Tensor>();
  for (const t of infos) {
    const rows = t.ne.slice(1).reduce((a, b) => a * b, 1);
    const bytes = t.type === GgmlType.F32 ? 4 * t.ne[0] * rows : ggmlRowBytes(t.type, t.ne[0]) * rows;
    out.set(t.name, { type: t.type, ne: t.ne, data: buf.subarray(start + t.off, start + t.off + bytes) });
  }
  return out;
}

function randomActivations(M: number, K: number, seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(M * K);
  for (let i = 0; i < x.length; i++) {
    const g = (r() + r() + r() + r() - 2) * 1.7;
    x[i] = r() < 0.01 ? g * 20 : g;  // a few outliers, as real hidden states have
  }
  return x;
}

const nb = cpuBackend();

test('14-bit activations are >= 3x closer to float64 than llama.cpp-style int8 ones, on the fixtures\' weights', () => {
  const f32 = readGguf(fixturePath('gguf/llama-q256-F32/llama-q256-F32.gguf'));
  const report: string[] = [];
  for (const file of ['Q8_0', 'Q6_K', 'Q4_K_M', 'Q4_0']) {
    const tensors = readGguf(fixturePath(`gguf/llama-q256-${file}/llama-q256-${file}.gguf`));
    const sums = new Map<GgmlType, { ours: number; llama: number; n: number }>();
    for (const [name, t] of tensors) {
      if (t.type === GgmlType.F32 || t.ne.length !== 2 || name === 'token_embd.weight') continue;
      const [K, N] = t.ne;
      const w = nb.dequantizeRows(t.type, t.data, N, K);
      // The layout check: quantized weights near the F32 file's (relative RMS error < 0.2).
      const orig = new Float32Array(Uint8Array.from(f32.get(name)!.data).buffer);
      let e2 = 0, o2 = 0;
      for (let i = 0; i < w.length; i++) { e2 += (w[i] - orig[i]) ** 2; o2 += orig[i] ** 2; }
      assert.ok(Math.sqrt(e2 / o2) < 0.2, `${file} ${name}: dequantized weights far from the F32 file's (${Math.sqrt(e2 / o2)})`);

      const M = 8;
      const x = randomActivations(M, K, K + N);
      const h = nb.packLinearQuant([{ w: t.data, type: t.type, n: N }], K);
      const y = new Float32Array(M * N);
      nb.linearPacked(h, x, M, [y], false);
      nb.packedLinearFree(h);
      const bs = typeInfo(t.type).blockSize;
      const s = sums.get(t.type) ?? { ours: 0, llama: 0, n: 0 };
      for (let m = 0; m < M; m++) {
        const xl = llamaQ8Activations(x.subarray(m * K, (m + 1) * K), bs);
        for (let r = 0; r < N; r++) {
          let exact = 0, ll = 0;
          for (let k = 0; k < K; k++) {
            exact += w[r * K + k] * x[m * K + k];
            ll += w[r * K + k] * xl[k];
          }
          s.ours += Math.abs(y[m * N + r] - exact);
          s.llama += Math.abs(ll - exact);
          s.n++;
        }
      }
      sums.set(t.type, s);
    }
    for (const [type, s] of sums) {
      const ours = s.ours / s.n, llama = s.llama / s.n;
      report.push(`${file} ${ggmlTypeName(type)}: mean |dy| ours ${ours.toExponential(2)}, llama.cpp-style ${llama.toExponential(2)} (${(llama / ours).toFixed(0)}x)`);
      assert.ok(ours * 3 <= llama, `${file} ${ggmlTypeName(type)}: ours ${ours} not 3x below llama-style ${llama}`);
    }
  }
  console.log(report.join('\n'));
});
