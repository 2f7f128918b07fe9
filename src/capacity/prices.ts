/**
 * What one picture costs when xAI's answer does not say (usage.cost_in_usd_ticks), in USD: the price a request is
 * reserved at against DAILY_BUDGET_USD until its answer tells the real cost. xAI's list price for the 1.0 models;
 * the 2.0 model by quality as resellers quote it (late 2026), a little more at 2k; a model this worker does not
 * know, the most any is quoted at, so that a budget is never passed by guessing low.
 */
const BY_MODEL: Readonly<Record<string, number>> = {
  'grok-imagine-image': 0.02,
  'grok-2-image-1212': 0.07,
  // Retired 2026-11-02: served by 2.0 at quality low.
  'grok-imagine-image-quality': 0.02,
};
const TWO_BY_QUALITY: Readonly<Record<string, number>> = { low: 0.02, medium: 0.04, high: 0.06 };
const MOST = 0.08;

export function listPriceUsd(model: string, quality?: string, resolution?: string): number {
  if (model === 'grok-imagine-image-2.0') {
    const base = TWO_BY_QUALITY[quality ?? 'medium'] ?? MOST;
    return Math.min(MOST, resolution === '2k' ? base + 0.02 : base);
  }
  return BY_MODEL[model] ?? MOST;
}
