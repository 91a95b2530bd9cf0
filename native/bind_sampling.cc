// Bindings of the sampling kernels (ops_sampling.h): one-row argmax, softmax draw, log-sum-exp,
// rank and top-p preparation, and the many-row draw of a decode step.
#include <cmath>
#include <string>

#include "binding.h"
#include "ops_sampling.h"

namespace pw {
namespace {

// Largest row offset / length accepted: logits index exactly as doubles.
constexpr int64_t kMaxIndex = int64_t(1) << 53;

struct Row {
  const float* x;
  int64_t n;
};

// Reads (logits, offset, n): the row logits[offset, offset + n), n >= 1.
Row row_args(const Args& a) {
  auto logits = a.f32(0, "logits");
  const int64_t off = a.integer(1, "offset", 0, kMaxIndex);
  const int64_t n = a.integer(2, "n", 1, kMaxIndex);
  if (static_cast<size_t>(off + n) > logits.len) {
    a.range_fail("n", "= " + std::to_string(n) + " at offset " + std::to_string(off) + " runs past the end of logits (" +
                          std::to_string(logits.len) + " values)");
  }
  return Row{logits.data + off, n};
}

double inv_temperature(const Args& a, size_t i, const char* name) {
  const double t = a.number(i, name);
  if (!std::isfinite(t) || !(t > 0)) a.range_fail(name, "must be finite and > 0, got " + num(t));
  return t;
}

double uniform(const Args& a, size_t i) {
  const double u = a.number(i, "u");
  if (!(u >= 0 && u < 1)) a.range_fail("u", "must be in [0, 1), got " + num(u));
  return u;
}

Napi::Value RowArgmax(const Napi::CallbackInfo& info) {
  // rowArgmax(logits, offset, n)
  Args a(info, "rowArgmax", 3);
  const Row r = row_args(a);
  return Napi::Number::New(info.Env(), static_cast<double>(row_argmax(r.x, r.n)));
}

Napi::Value RowSoftmaxSample(const Napi::CallbackInfo& info) {
  // rowSoftmaxSample(logits, offset, n, invTemperature, u)
  Args a(info, "rowSoftmaxSample", 5);
  const Row r = row_args(a);
  const double inv_t = inv_temperature(a, 3, "invTemperature");
  const double u = uniform(a, 4);
  return Napi::Number::New(info.Env(), static_cast<double>(row_softmax_sample(r.x, r.n, static_cast<float>(inv_t), u)));
}

Napi::Value RowLogSumExp(const Napi::CallbackInfo& info) {
  // rowLogSumExp(logits, offset, n)
  Args a(info, "rowLogSumExp", 3);
  const Row r = row_args(a);
  return Napi::Number::New(info.Env(), row_logsumexp(r.x, r.n));
}

Napi::Value RowCountGreater(const Napi::CallbackInfo& info) {
  // rowCountGreater(logits, offset, n, value)
  Args a(info, "rowCountGreater", 4);
  const Row r = row_args(a);
  const float v = static_cast<float>(a.number(3, "value"));
  return Napi::Number::New(info.Env(), static_cast<double>(row_count_greater(r.x, r.n, v)));
}

Napi::Value RowNucleusWeights(const Napi::CallbackInfo& info) {
  // rowNucleusWeights(logits, offset, n, max, invT, w: Float64Array, bucket: Uint16Array,
  //                   hist: Float64Array, bucketsPerNat) -> total mass; hist must be zeroed by the caller.
  Args a(info, "rowNucleusWeights", 9);
  const Row r = row_args(a);
  const double maxv = a.number(3, "max");
  if (!std::isfinite(maxv)) a.range_fail("max", "must be finite, got " + num(maxv));
  const double inv_t = inv_temperature(a, 4, "invT");
  auto w = a.f64(5, "w");
  auto bucket = a.u16(6, "bucket");
  auto hist = a.f64(7, "hist");
  const double per_nat = a.number(8, "bucketsPerNat");
  if (!std::isfinite(per_nat) || !(per_nat > 0)) a.range_fail("bucketsPerNat", "must be finite and > 0, got " + num(per_nat));
  a.need_at_least(w, "w", static_cast<size_t>(r.n), "n");
  a.need_at_least(bucket, "bucket", static_cast<size_t>(r.n), "n");
  if (hist.len < 1 || hist.len > 65536) a.range_fail("hist", "must have 1 to 65536 buckets, has " + std::to_string(hist.len));
  const double sum = row_nucleus_weights(r.x, r.n, maxv, inv_t, w.data, bucket.data, hist.data, per_nat,
                                         static_cast<int64_t>(hist.len));
  return Napi::Number::New(info.Env(), sum);
}

Napi::Value DrawRows(const Napi::CallbackInfo& info) {
  // drawRows(logits, n, rows: Int32Array, invTemperature: Float64Array, u: Float64Array, out: Int32Array)
  Args a(info, "drawRows", 6);
  auto logits = a.f32(0, "logits");
  const int64_t n = a.integer(1, "n", 1, 1000000000);
  auto rows = a.i32(2, "rows");
  auto inv_t = a.f64(3, "invTemperature");
  auto us = a.f64(4, "u");
  auto out = a.i32(5, "out");
  const size_t count = rows.len;
  a.need_exactly(inv_t, "invTemperature", count, "rows.length");
  a.need_exactly(us, "u", count, "rows.length");
  a.need_exactly(out, "out", count, "rows.length");
  const int64_t nrows = static_cast<int64_t>(logits.len) / n;
  for (size_t i = 0; i < count; i++) {
    const int64_t at = static_cast<int64_t>(i);
    a.need_index("rows", {at}, rows.data[i], 0, nrows, "is not a row of logits, rows are");
    const double t = inv_t.data[i], u = us.data[i];
    if (!(t >= 0) || !std::isfinite(t)) a.range_fail("invTemperature", "[" + std::to_string(at) + "] = " + num(t) + " must be finite and >= 0");
    if (t > 0 && !(u >= 0 && u < 1)) a.range_fail("u", "[" + std::to_string(at) + "] = " + num(u) + " must be in [0, 1)");
  }
  draw_rows(logits.data, n, rows.data, inv_t.data, us.data, out.data, static_cast<int64_t>(count));
  return info.Env().Undefined();
}

}  // namespace

void InitSampling(Napi::Env env, Napi::Object exports) {
  bind<DrawRows>(env, exports, "drawRows");
  bind<RowArgmax>(env, exports, "rowArgmax");
  bind<RowSoftmaxSample>(env, exports, "rowSoftmaxSample");
  bind<RowLogSumExp>(env, exports, "rowLogSumExp");
  bind<RowCountGreater>(env, exports, "rowCountGreater");
  bind<RowNucleusWeights>(env, exports, "rowNucleusWeights");
}

}  // namespace pw
