#!/bin/sh
# Records one console log: record.sh KERNEL INITRD OUT.log "EXTRA CMDLINE" [unplug]
# The minimal QEMU line of docs/DESIGN.md ('QEMU command line'), console captured to a file. With "unplug", a QMP
# device_del of the first virtio-rng is sent once the guest prints
# "ccwtest: ready-for-unplug".
# RECORD_TIMEOUT (seconds, default 120) bounds the run: debug kernels boot slowly under load.
set -e
k=$1; i=$2; out=$3; extra=$4; mode=$5
sock=$(mktemp -u /tmp/orcq.XXXXXX)
timeout ${RECORD_TIMEOUT:-120} qemu-system-s390x -machine s390-ccw-virtio -cpu max -smp 2 -m 512 \
  -nographic -nodefaults -chardev file,id=con0,path="$out" -device sclpconsole,chardev=con0 \
  -kernel "$k" -initrd "$i" -append "console=ttysclp0 $extra" -no-reboot \
  -device virtio-rng-ccw,devno=fe.0.0002,id=rng0 -device virtio-rng-ccw,devno=fe.0.0003,id=rng1 \
  -qmp unix:$sock,server=on,wait=off -monitor none -serial none &
q=$!
if [ "$mode" = unplug ]; then
  n=0
  until grep -q "ccwtest: ready-for-unplug" "$out" 2>/dev/null || [ $n -gt 600 ]; do sleep 0.1; n=$((n+1)); done
  python3 - "$sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
for cmd in ({"execute": "qmp_capabilities"}, {"execute": "device_del", "arguments": {"id": "rng0"}}):
    f.write(json.dumps(cmd) + "\n"); f.flush(); print(f.readline().strip())
PY
fi
wait $q || true
rm -f $sock
