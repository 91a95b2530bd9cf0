// N-API bindings of the quantized-weight ops (contract: src/backend/backend.ts).
#pragma once
#include <napi.h>

#include "quant.h"

namespace pw {
// The quantized pack a handle holds (packLinearQuant, packGateUpQuant), nullptr for any other value.
quant::QuantLinear* quant_pack(Napi::Value v);
// packedLinearFree of a quantized pack: its weights go now (the handle's finalizer deletes it).
void quant_pack_free(Napi::Env env, quant::QuantLinear& p);
// Adds packLinearQuant, packGateUpQuant, embeddingQuant, dequantizeRows and quantAmx.
// linearPacked, embeddingPacked and packedLinearFree (bind_linear.cc) take quantized packs too.
void InitQuant(Napi::Env env, Napi::Object exports);
}  // namespace pw
