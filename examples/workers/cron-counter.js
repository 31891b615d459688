// Workers-style cron trigger: counts its runs in sdk.db without holding up
// the handler (ctx.waitUntil), and reports the schedule that fired it.
export default {
  async scheduled(controller, env, ctx) {
    const runs = Number((await sdk.db.get("cron-runs")) ?? 0) + 1;
    ctx.waitUntil(sdk.db.set("cron-runs", String(runs)));
    console.log(`run ${runs} by ${controller.cron} at ${new Date(controller.scheduledTime).toISOString()}`);
  },
  // A manual run reports the count so far.
  async run() {
    return { runs: Number((await sdk.db.get("cron-runs")) ?? 0) };
  },
};
