#!/usr/bin/python3
"""Browse _tdxfer._tcp.local. with Debian's python3-zeroconf (a third-party mDNS stack)
for N seconds and print one JSON line per service found:
  {"name", "port", "addresses", "txt": {key: value}}
Run inside a test network namespace only:  ip netns exec <ns> /usr/bin/python3 zc_browse.py 3
"""
import json
import sys
import time

from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

SERVICE = "_tdxfer._tcp.local."


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    zc = Zeroconf(ip_version=IPVersion.V4Only)
    names = []

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added and name not in names:
            names.append(name)

    browser = ServiceBrowser(zc, SERVICE, handlers=[on_change])
    deadline = time.monotonic() + seconds
    printed = set()
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1)
            for name in list(names):
                if name in printed:
                    continue
                info = zc.get_service_info(SERVICE, name, timeout=1000)
                if info is None:
                    continue
                printed.add(name)
                txt = {}
                for k, v in (info.properties or {}).items():
                    key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
                    txt[key] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                print(json.dumps({
                    "name": name,
                    "port": info.port,
                    "addresses": info.parsed_addresses(),
                    "server": info.server,
                    "txt": txt,
                }), flush=True)
    finally:
        browser.cancel()
        zc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
