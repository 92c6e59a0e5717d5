// Entry point of the dashboard's browser code, bundled by esbuild into
// dist/app.js (npm run build; `make assets` from the repository root).
// live.js is the pages' live updates over SSE (board, alerts, resident page);
// charts.js draws the vitals charts with uPlot.
import './live.js';
import { initCharts } from './charts.js';

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', function () { initCharts(document); });
} else {
  initCharts(document);
}
