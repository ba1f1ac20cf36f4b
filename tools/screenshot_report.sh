#!/usr/bin/env bash
# Renders a cotune end-of-run report with headless Chromium (Debian package `chromium`) to a PNG, so a
# person can look at it (issue 6: "a screenshot of the report page ... looked at and correct").
#
#   tools/screenshot_report.sh OUTPUT/report/index.html [out.png]      # a real run's report
#   tools/screenshot_report.sh --demo BUILD_DIR [out.png]             # a synthetic 60-step run first
#
# --demo runs BUILD_DIR/tests/track_demo_run (built with the test_track suite) into a temp folder.
set -euo pipefail

usage() { sed -n '2,8p' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage

if [[ $1 == --demo ]]; then
  [[ $# -ge 2 ]] || usage
  demo_bin="$2/tests/track_demo_run"
  [[ -x $demo_bin ]] || { echo "error: $demo_bin not found: build the track_demo_run target first" >&2; exit 1; }
  run_dir=$(mktemp -d /tmp/cotune-report-demo-XXXXXX)
  "$demo_bin" "$run_dir" >/dev/null 2>&1
  html="$run_dir/report/index.html"
  png="${3:-/tmp/cotune-report.png}"
else
  html="$1"
  png="${2:-/tmp/cotune-report.png}"
fi
[[ -f $html ]] || { echo "error: report page $html does not exist" >&2; exit 1; }

chromium_bin=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium_bin ]]; then
  echo "error: chromium not found (apt-get install -y chromium)" >&2
  exit 1
fi

html_abs=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
# --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
"$chromium_bin" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --screenshot="$png" --window-size="${WINDOW_SIZE:-1200,1400}" "file://$html_abs" >/dev/null 2>&1
[[ -s $png ]] || { echo "error: chromium wrote no screenshot to $png" >&2; exit 1; }
echo "$png"
