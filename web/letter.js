// The access letter page: the holder types the code, sees the studies the letter shows, and
// downloads them encrypted under the passcode. The download is a plain form post, so the
// browser saves the file as it arrives instead of holding it in memory.

const $ = (id) => document.getElementById(id);

function say(text) {
  const m = $('message');
  m.textContent = text;
  m.hidden = !text;
}

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text ?? '';
  row.appendChild(td);
}

function dicomDate(d) {
  return d && d.length === 8 ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : (d ?? '');
}

$('open').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  say('');
  const code = $('code').value.trim();
  const r = await fetch('/api/letter/open', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    $('studies').hidden = true;
    say(body.detail ?? `refused (${r.status})`);
    return;
  }
  const rows = $('rows');
  rows.replaceChildren();
  for (const s of body.studies) {
    const tr = document.createElement('tr');
    tr.className = 'study';
    cell(tr, dicomDate(s.date));
    cell(tr, s.description ?? '(no description)');
    cell(tr, s.modalities);
    cell(tr, String(s.instances));
    rows.appendChild(tr);
  }
  const until = new Date(body.letter.expires_at).toISOString().slice(0, 10);
  $('valid').textContent = `${body.studies.length} study(ies); this letter is valid until ${until}.`;
  $('download-code').value = code;
  $('studies').hidden = false;
});
