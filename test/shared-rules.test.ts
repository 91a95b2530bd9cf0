/**
 * The rules both threads share: the n / best_of / beam-width rule (src/shared/fan-out.ts) and the
 * request limits (src/shared/request-limits.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ContextLengthError, InvalidRequestError } from '../src/errors.js';
import { hasExtraCandidates, initialSequences, keepBest, ranksByLogprob, reportedSequences, requestWidth } from '../src/shared/fan-out.js';
import { checkRequestFits, checkTokenId, engineLimits, maxRequestTokens, type RequestLimits } from '../src/shared/request-limits.js';

const sampling = (n: number, bestOf: number) => ({ n, bestOf, useBeamSearch: false });
const beam = (n: number, width: number) => ({ n, bestOf: width, useBeamSearch: true });

describe('fan-out rule', () => {
  test('sampling runs best_of candidates from the start and reports them all', () => {
    for (const p of [sampling(1, 1), sampling(3, 3), sampling(2, 5)]) {
      assert.equal(requestWidth(p), p.bestOf);
      assert.equal(initialSequences(p), p.bestOf);
      assert.equal(reportedSequences(p), p.bestOf);
    }
    assert.equal(hasExtraCandidates(sampling(2, 5)), true);
    assert.equal(ranksByLogprob(sampling(3, 3)), false);
    assert.equal(ranksByLogprob(sampling(2, 5)), true);
  });

  test('beam search holds its width, starts from one sequence and reports n hypotheses', () => {
    const p = beam(2, 4);
    assert.equal(requestWidth(p), 4);
    assert.equal(initialSequences(p), 1);
    assert.equal(reportedSequences(p), 2);
    assert.equal(ranksByLogprob(beam(4, 4)), true);
  });

  test('keepBest returns the n best candidates by cumulative logprob, renumbered, ties to the earlier', () => {
    const outs = [-3, -1, -2, -1, -5].map((c, index) => ({ index, cumulativeLogprob: c, id: index }));
    const best = keepBest(outs, sampling(3, 5));
    assert.deepEqual(
      best.map((o) => [o.id, o.index]),
      [
        [1, 0],
        [3, 1],
        [2, 2],
      ],
    );
    assert.equal(keepBest(outs, sampling(5, 5)), outs, 'nothing to choose when best_of == n');
    const hyps = outs.slice(0, 3);
    assert.equal(keepBest(hyps, beam(2, 4)), hyps, 'beam search reports its n best itself');
  });
});

describe('request limits', () => {
  const limits: RequestLimits = { vocabSize: 100, maxModelLen: 64, kvCacheTokens: 48, blockSize: 16, maxNumSeqs: 4 };
  const params = (maxTokens: number, n = 1, bestOf = n) => ({ ...sampling(n, bestOf), maxTokens });

  test('engineLimits reads the worker facts; the longest request is the smaller of context and pool', () => {
    const l = engineLimits({ model: { vocabSize: 100 }, maxModelLen: 64, numBlocks: 3, blockSize: 16, config: { maxNumSeqs: 4 } });
    assert.deepEqual(l, limits);
    assert.equal(maxRequestTokens(l), 48);
  });

  test('token ids must be integers inside the vocabulary', () => {
    checkTokenId('prompt', 99, 100);
    for (const bad of [100, -1, 1.5]) {
      assert.throws(
        () => checkTokenId('prompt', bad, 100),
        (e: unknown) => e instanceof InvalidRequestError && e.param === 'prompt' && /outside the vocabulary \(valid ids are 0\.\.99\)/.test(e.message),
      );
    }
  });

  test('checkRequestFits: empty prompt, vocabulary, width, context, pool', () => {
    checkRequestFits(limits, [1, 2, 3], params(45));
    assert.throws(() => checkRequestFits(limits, [], params(1)), /prompt is empty/);
    assert.throws(() => checkRequestFits(limits, [1, 200], params(1)), /token id 200/);
    assert.throws(
      () => checkRequestFits(limits, [1], params(1, 2, 5)),
      (e: unknown) => e instanceof InvalidRequestError && e.param === 'best_of' && /runs 5 sequences at once .* at most 4 \(--max-num-seqs\)/.test(e.message),
    );
    assert.throws(
      () => checkRequestFits(limits, [1], params(1, 5)),
      (e: unknown) => e instanceof InvalidRequestError && e.param === 'n',
    );
    assert.throws(
      () => checkRequestFits(limits, [1, 2, 3, 4], params(61)),
      (e: unknown) => e instanceof ContextLengthError && /maximum context length is 64 tokens.*65 tokens/.test(e.message),
    );
    assert.throws(
      () => checkRequestFits(limits, [1, 2, 3, 4], params(45)),
      (e: unknown) => e instanceof ContextLengthError && /needs 4 KV blocks \(49 tokens\) but the KV cache has only 3 \(48 tokens\)/.test(e.message),
    );
  });
});
