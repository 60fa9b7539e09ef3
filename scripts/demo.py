#!/usr/bin/env python3
"""The deduplication demo (make demo).

Starts our qemu-storage-daemon on a fresh image created with
-o dedup=sha256, writes several similar real disk images (ext4 file
systems built from this machine's files by make-disk-images.sh) into it
through NBD with stock QEMU's qemu-img as the client, prints the QMP
dedup metrics and the space saved, verifies every image reads back
byte for byte, and stops the daemon cleanly.

usage: demo.py BUILD_DIR [N_IMAGES] [CLUSTER_SIZE]
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STOCK_QEMU_IMG = '/usr/bin/qemu-img'


class Qmp:
    """Just enough QMP: connect, negotiate, execute."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        for _ in range(100):
            try:
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        self.file = self.sock.makefile('rw')
        json.loads(self.file.readline())            # greeting
        self.execute('qmp_capabilities')

    def execute(self, cmd, **args):
        self.file.write(json.dumps({'execute': cmd, 'arguments': args}) + '\n')
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if 'event' in reply:
                continue
            if 'error' in reply:
                raise RuntimeError(f"{cmd}: {reply['error']['desc']}")
            return reply['return']


def run(*cmd):
    subprocess.run(cmd, check=True)


def human(n):
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024:
            return f'{n:.1f} {unit}'
        n /= 1024
    return f'{n:.1f} TiB'


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else 'build')
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    cluster = sys.argv[3] if len(sys.argv) > 3 else '4k'
    cache = os.path.join(build, 'demo-images')
    run(os.path.join(HERE, 'make-disk-images.sh'), cache, str(count))
    images = [os.path.join(cache, f'disk-{k}.img') for k in range(1, count + 1)]
    size = os.path.getsize(images[0])

    work = tempfile.mkdtemp(prefix='dedup-demo.', dir='/var/tmp')
    img = os.path.join(work, 'demo.qcow2')
    sock = os.path.join(work, 'nbd.sock')
    qmp_path = os.path.join(work, 'qmp.sock')
    run(os.path.join(build, 'qemu-img'), 'create', '-q', '-f', 'qcow2',
        '-o', f'dedup=sha256,cluster_size={cluster}', img, str(size * count))
    qsd = subprocess.Popen([
        os.path.join(build, 'qemu-storage-daemon'),
        '--blockdev', f'driver=file,node-name=f,filename={img}',
        '--blockdev', 'driver=qcow2,node-name=disk,file=f',
        '--nbd-server', f'addr.type=unix,addr.path={sock}',
        '--export', 'type=nbd,id=e,node-name=disk,name=demo,writable=on',
        '--chardev', f'socket,id=m,path={qmp_path},server=on,wait=off',
        '--monitor', 'chardev=m'])
    try:
        qmp = Qmp(qmp_path)
        print(f'Writing {count} disk images of {human(size)} through NBD '
              f'into a dedup qcow2 ({cluster} clusters)...')
        for k, src in enumerate(images):
            target = (f'driver=raw,offset={k * size},size={size},'
                      f'file.driver=nbd,file.server.type=unix,'
                      f'file.server.path={sock},file.export=demo')
            t0 = time.time()
            run(STOCK_QEMU_IMG, 'convert', '-n', '-f', 'raw', src,
                '--target-image-opts', target)
            print(f'  {os.path.basename(src)}: {time.time() - t0:.1f} s')
        stats = [s for s in qmp.execute('query-blockstats', **{'query-nodes': True})
                 if s.get('node-name') == 'disk'][0]
        dedup = stats.get('dedup', {})
        print('\nQMP query-blockstats, dedup metrics of node "disk":')
        print(json.dumps(dedup, indent=4))
        qmp.execute('quit')
        qsd.wait(timeout=60)
    finally:
        if qsd.poll() is None:
            qsd.terminate()
            qsd.wait()

    logical = size * count
    on_disk = os.stat(img).st_blocks * 512
    print(f'\nDisk images written: {human(logical)}; dedup image on disk: '
          f'{human(on_disk)}; saved {human(logical - on_disk)} '
          f'({logical / on_disk:.2f}x)')
    for k, src in enumerate(images):
        opts = (f'driver=raw,offset={k * size},size={size},'
                f'file.driver=qcow2,file.file.filename={img}')
        subprocess.run([STOCK_QEMU_IMG, 'compare', '-q', '--image-opts',
                        f'driver=raw,file.filename={src}', opts], check=True)
    print(f'All {count} images read back identical (stock qemu-img compare).')
    shutil.rmtree(work)


if __name__ == '__main__':
    main()
