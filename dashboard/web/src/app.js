// Entry point of the dashboard's browser code, bundled by esbuild into
// dist/app.js (npm run build; `make assets` from the repository root).
// live.js is the pages' live updates over SSE (board, alerts, resident page);
// triage.js the board's resolve with undo and night mode; charts.js draws
// the vitals charts with uPlot; alarm.js rings for new and escalated alerts.
import './live.js';
import { initCharts } from './charts.js';
import { initTheme, initTriage } from './triage.js';
import { initAlarm } from './alarm.js';

initTheme(document);
function start() {
  initCharts(document);
  initTriage(document);
  initAlarm(document);
}
if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', start);
} else {
  start();
}
