/**
 * The safetensors {@link WeightSource}: all weights of a model directory behind one name → tensor
 * lookup, whatever the sharding.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModelLoadError } from '../../errors.js';
import { SafetensorsFile } from './safetensors.js';
import { checkTensorShape, type FloatWeightTensor, type WeightSource } from './weight-source.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/**
 * The safetensors weights of one model directory. Files are memory-mapped when opened; tensor data
 * is paged in by the OS when first touched. Tensors are float (F32, F16, BF16), stored in Hugging
 * Face layout already, and handed out as views into the mapping.
 */
export class WeightStore implements WeightSource {
  private readonly cache = new Map<string, FloatWeightTensor>();

  private constructor(
    /** What the weights were opened from (index file, single file or directory), for messages. */
    readonly description: string,
    private readonly fileOf: Map<string, SafetensorsFile>,
  ) {}

  /**
   * Open the weights of `dir`: `model.safetensors.index.json` (sharded, via its `weight_map`) if
   * present, else `model.safetensors`, else every `*.safetensors` file in the directory.
   */
  static open(dir: string): WeightStore {
    const indexPath = join(dir, INDEX_FILE);
    if (existsSync(indexPath)) return WeightStore.openIndex(dir, indexPath);
    const single = join(dir, SINGLE_FILE);
    if (existsSync(single)) return WeightStore.fromFiles(single, [SafetensorsFile.open(single)]);

    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.safetensors')).sort();
    } catch (e) {
      throw new ModelLoadError(`${dir}: cannot read model directory (${(e as Error).message})`, { code: 'model_file_missing', cause: e });
    }
    if (names.length === 0) {
      throw new ModelLoadError(`${dir}: no weights found (expected ${SINGLE_FILE}, ${INDEX_FILE} or *.safetensors files)`, {
        code: 'model_file_missing',
      });
    }
    return WeightStore.fromFiles(dir, names.map((n) => SafetensorsFile.open(join(dir, n))));
  }

  private static fromFiles(source: string, files: SafetensorsFile[]): WeightStore {
    const fileOf = new Map<string, SafetensorsFile>();
    for (const f of files) {
      for (const name of f.names()) {
        const other = fileOf.get(name);
        if (other) throw new ModelLoadError(`tensor "${name}" is stored twice, in ${other.path} and ${f.path}`, { code: 'invalid_safetensors' });
        fileOf.set(name, f);
      }
    }
    return new WeightStore(source, fileOf);
  }

  private static openIndex(dir: string, indexPath: string): WeightStore {
    let index: unknown;
    try {
      index = JSON.parse(readFileSync(indexPath, 'utf8'));
    } catch (e) {
      throw new ModelLoadError(`${indexPath}: cannot read weight index (${(e as Error).message})`, { code: 'invalid_safetensors', cause: e });
    }
    const map = typeof index === 'object' && index !== null ? (index as Record<string, unknown>)['weight_map'] : undefined;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) {
      throw new ModelLoadError(`${indexPath}: missing or invalid "weight_map" object`, { code: 'invalid_safetensors' });
    }
    const shards = new Map<string, SafetensorsFile>();
    const fileOf = new Map<string, SafetensorsFile>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      // A shard name is a plain file name; anything else could escape the model directory.
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || shard === '..' || shard === '.') {
        throw new ModelLoadError(`${indexPath}: tensor "${name}" maps to invalid shard ${JSON.stringify(shard)}`, { code: 'invalid_safetensors' });
      }
      let file = shards.get(shard);
      if (!file) {
        const shardPath = join(dir, shard);
        if (!existsSync(shardPath)) {
          throw new ModelLoadError(`${indexPath}: shard ${shard} (holding tensor "${name}") is missing from ${dir}`, { code: 'model_file_missing' });
        }
        file = SafetensorsFile.open(shardPath);
        shards.set(shard, file);
      }
      if (!file.has(name)) {
        throw new ModelLoadError(`${indexPath}: tensor "${name}" is mapped to ${file.path}, which does not contain it`, { code: 'tensor_missing' });
      }
      fileOf.set(name, file);
    }
    return new WeightStore(indexPath, fileOf);
  }

  has(name: string): boolean {
    return this.fileOf.has(name);
  }

  /** All tensor names, sorted. */
  names(): string[] {
    return [...this.fileOf.keys()].sort();
  }

  /** The stored shape of a tensor, or undefined when absent (lets callers probe optional tensors). */
  shapeOf(name: string): number[] | undefined {
    const e = this.fileOf.get(name)?.entry(name);
    return e ? [...e.shape] : undefined;
  }

  /**
   * The tensor `name`, checked against the shape the model expects. Throws {@link ModelLoadError}
   * naming the file and tensor when it is missing, has another shape or an unsupported dtype.
   */
  get(name: string, shape: number[]): FloatWeightTensor {
    const file = this.fileOf.get(name);
    checkTensorShape(file?.path ?? this.description, name, file?.entry(name)?.shape, shape);
    let t = this.cache.get(name);
    if (!t) {
      const v = file!.tensor(name);
      t = { name, kind: 'float', dtype: v.dtype, shape: v.shape, data: v.data, source: file!.path };
      this.cache.set(name, t);
    }
    return { ...t, shape: [...t.shape] };
  }
}
