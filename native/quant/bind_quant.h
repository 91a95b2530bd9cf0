// N-API bindings of the quantized-weight ops (contract: src/backend/backend.ts).
#pragma once
#include <napi.h>

namespace pw {
// Adds packLinearQuant, packGateUpQuant, embeddingQuant and dequantizeRows, and wraps
// linearPacked / packedLinearFree (already in exports) so they also take quantized packs.
void InitQuant(Napi::Env env, Napi::Object exports);
}  // namespace pw
