// Import of released PyTorch checkpoints (`torch.save` zips of {epoch, step, name, state_dict,
// optimizer}) through LibTorch's restricted unpickler, which rebuilds tensors, storages and plain
// containers and refuses any other global: nothing in the file is executed. (The safetensors
// format is read and written in TypeScript: lib/checkpoint/safetensors.ts.)
#pragma once

#include <napi.h>

namespace vilref {

// importTorchCheckpoint(bytes: Uint8Array, name: string) → Promise<{ tensors: {name: TensorData},
// metadata: { epoch?, step?, name? } }>, keys without the `module.` prefix, `bert.pooler.*` dropped.
void InitCheckpoint(Napi::Env env, Napi::Object exports);

}  // namespace vilref
