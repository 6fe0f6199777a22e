/**
 * A minimal Server-Sent Events reader for the CLI (Node 20 has fetch but no EventSource):
 * turns a byte stream into `{ event, data }` records per the HTML spec's parsing rules
 * (lines end in LF, CR or CRLF; `data` lines join with LF; comments and `id`/`retry`
 * are ignored; a record without data is not dispatched).
 */
export interface SseRecord {
  event: string;
  data: string;
}

export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseRecord> {
  const decoder = new TextDecoder();
  let buf = '';
  let event = '';
  let data: string[] = [];
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let m: RegExpExecArray | null;
    // A trailing lone CR may be the first half of CRLF: wait for the next chunk.
    while ((m = /\r\n|\n|\r(?!$)/.exec(buf)) !== null) {
      const line = buf.slice(0, m.index);
      buf = buf.slice(m.index + m[0].length);
      if (line === '') {
        if (data.length > 0) yield { event: event || 'message', data: data.join('\n') };
        event = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
  }
}
