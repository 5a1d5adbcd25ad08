#!/usr/bin/env bash
# Regenerates Tests/ConntrackKitTests/Fixtures/calico-*.txt: conntrack entries written by
# Calico's own datapath (../shared/calico/calico-lab), each as the lab decodes it (from
# Calico's own structs) and as raw key and value bytes. The unit tests decode the bytes with
# ctctl and compare with the lab's decoding. Run as root; needs ../shared/calico.
set -euo pipefail
cd "$(dirname "$0")/.."
lab=${CALICO_LAB:-../shared/calico/calico-lab}
[[ -x $lab ]] || { echo "capture-calico-fixtures: no $lab" >&2; exit 1; }
out=Tests/ConntrackKitTests/Fixtures
for version in v3.29 head; do
	dir=$(mktemp -d /tmp/ctctl-calico-fixtures-XXXXXX)
	trap '"$lab" down --bpffs "$dir" >/dev/null 2>&1 || true; rmdir "$dir" 2>/dev/null || true' EXIT
	"$lab" up --bpffs "$dir" --version "$version" >/dev/null
	for fam in 4 6; do
		if [[ $fam == 4 ]]; then
			vip=198.19.0.10 c1=198.18.1.2 c2=198.18.1.3 c3=198.18.1.200 b1=198.18.2.2 b2=198.18.3.2 host=198.18.0.1
			w() { echo "$1:$2"; }
		else
			vip=2001:db8:ff::10 c1=2001:db8:1::2 c2=2001:db8:1::3 c3=2001:db8:ffff::200 b1=2001:db8:2::2 b2=2001:db8:3::2 host=2001:db8::1
			w() { echo "[$1]:$2"; }
		fi
		# a NAT miss: the service does not exist yet (the stale NORMAL entry of the incident)
		"$lab" packet --bpffs "$dir" udp "$(w $c1 40000)" "$(w $vip 53)" >/dev/null
		"$lab" service set --bpffs "$dir" "$(w $vip 53)/udp" "$(w $b1 5353)" "$(w $b2 5353)" >/dev/null
		# a NAT flow and its reply; a client whose address sorts after the VIP's (Calico's A/B
		# order: 198.18.1.200 and 2001:db8:ffff::200 do, 198.18.1.3 and 2001:db8:1::3 do not)
		"$lab" packet --bpffs "$dir" udp "$(w $c2 40000)" "$(w $vip 53)" >/dev/null
		"$lab" reply --bpffs "$dir" udp "$(w $b1 5353)" "$(w $c2 40000)" >/dev/null || true
		"$lab" packet --bpffs "$dir" udp "$(w $c3 40001)" "$(w $vip 53)" >/dev/null
		# TCP: a NAT connection's SYN, and a NodePort flow to a host address
		"$lab" packet --bpffs "$dir" tcp "$(w $c2 50000)" "$(w $vip 53)" >/dev/null
		if [[ $fam == 4 ]]; then rt=$host; else rt="[$host]"; fi
		"$lab" route --bpffs "$dir" "$rt" 0x18 >/dev/null
		if [[ $fam == 4 ]]; then np=255.255.255.255; else np=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff; fi
		"$lab" service set --bpffs "$dir" "$(w $np 30080)/udp" "$(w $b1 5353)" >/dev/null
		"$lab" packet --bpffs "$dir" udp "$(w $c1 40002)" "$(w $host 30080)" >/dev/null
	done
	{
		echo "# Calico $version conntrack entries written by Calico's datapath (scripts/capture-calico-fixtures.sh)."
		echo "# Each entry: the lab's decoding (from Calico's structs), then map, key hex, value hex."
		for fam in 4 6; do
			paste -d '\n' <("$lab" ct --bpffs "$dir" -$fam) <("$lab" ct --bpffs "$dir" -$fam --hex)
		done
	} >"$out/calico-$version.txt"
	"$lab" down --bpffs "$dir" >/dev/null
	rmdir "$dir" 2>/dev/null || true
	trap - EXIT
done
echo "capture-calico-fixtures: wrote $out/calico-v3.29.txt and $out/calico-head.txt"
