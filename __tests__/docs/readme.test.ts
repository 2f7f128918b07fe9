import fs from 'node:fs';
import path from 'node:path';
import { USER_MESSAGES } from '../../src/base/errors';
import { SCHEMA } from '../../src/config/schema';
import { settingsOf } from '../../src/config/setting';
import { markdownDoc, ticked } from '../support/markdown';

/**
 * The README's tables that an operator copies from say what the code does: the settings table names every
 * variable of the schema, and only those, with the schema's defaults; the table of codes gives each code's very
 * sentence; the log table names lines the worker writes.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const { tableAfter } = markdownDoc('README.md');

describe('README.md against the code', () => {
  const settings = settingsOf(SCHEMA);
  const rows = tableAfter('## Configuration');

  it('has a row for every setting of the schema, and for nothing else', () => {
    const documented = rows.flatMap((row) => ticked(row[0]));
    expect([...documented].sort()).toEqual(settings.map((s) => s.env).sort());
  });

  it("gives each setting the schema's default", () => {
    const wrong: string[] = [];
    for (const [names, defaults] of rows) {
      // A default in backticks is the value, one per variable of the row; words ("auto", "required") mean none.
      const values = defaults.startsWith('`') ? ticked(defaults) : [];
      ticked(names).forEach((name, i) => {
        const declared = settings.find((s) => s.env === name)?.default;
        const shown = values[i] ?? (declared === '' ? '' : undefined);
        if (shown !== declared) wrong.push(`${name}: README ${JSON.stringify(shown)}, schema ${JSON.stringify(declared)}`);
      });
    }
    expect(wrong).toEqual([]);
  });

  it('gives every failure code with the very sentence people read', () => {
    const table = tableAfter('## For the notification service');
    const told = Object.fromEntries(table.flatMap(([codes, sentence]) => ticked(codes).map((code) => [code, sentence])));
    expect(told).toEqual(USER_MESSAGES);
  });

  it('names only log lines the worker writes', () => {
    const sources = fs
      .readdirSync(path.join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => fs.readFileSync(path.join(ROOT, 'src', f), 'utf8'))
      .join('\n');
    const messages = tableAfter('## Logs and alerts').flatMap(([msg]) => ticked(msg));
    const unknown = messages.map((m) => m.split(' …')[0]).filter((m) => !sources.includes(`'${m}`));
    expect(unknown).toEqual([]);
  });
});
