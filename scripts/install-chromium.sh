#!/usr/bin/env bash
# Headless Chromium renders the HTML report in one test. Debian packages it; install it when
# missing and we may (root, apt available). Otherwise the rendering test is skipped with a reason.
set -u
# chromium-driver (same Debian source, same version) lets Selenium drive it for the explorer test.
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the report-rendering test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "warning: could not install chromium; the report-rendering test will be skipped"
else
  echo "note: chromium not found and cannot be installed here; the report-rendering test will be skipped"
fi
exit 0
