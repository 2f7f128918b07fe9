import { hasScheme, redactUrl } from '../base/urls';
import { Kind, REJECT } from './setting';

/** The kinds of value a setting may hold; each says what it expects, for the error that names the variable. */

/** Any text (a setting that is set is never blank unless it is read verbatim). */
export const text: Kind<string> = { expects: 'text', parse: (t) => t };

/** A name used inside Redis keys: no spaces. */
export const word: Kind<string> = { expects: 'a name without spaces', parse: (t) => (/\s/.test(t) ? REJECT : t) };

/** A PEM block, which is often pasted into a single-line variable with literal "\n". */
export const pem: Kind<string> = { expects: 'a PEM block', parse: (t) => t.replace(/\\n/g, '\n') };

export const bool: Kind<boolean> = {
  expects: 'true or false',
  parse: (t) => {
    const value = t.toLowerCase();
    if (['true', '1', 'yes'].includes(value)) return true;
    if (['false', '0', 'no'].includes(value)) return false;
    return REJECT;
  },
};

export function int({ min, max }: { min: number; max?: number }): Kind<number> {
  return {
    expects: `a whole number from ${min}${max === undefined ? ' up' : ` to ${max}`}`,
    parse: (t) => {
      const n = Number(t);
      return /^-?\d+$/.test(t) && n >= min && n <= (max ?? Number.MAX_SAFE_INTEGER) ? n : REJECT;
    },
  };
}

/** An amount of money in US dollars, to the cent or finer: `25`, `7.50`. */
export const dollars: Kind<number> = {
  expects: 'an amount in US dollars from 0 up, e.g. 25 or 7.50',
  parse: (t) => (/^\d+(\.\d+)?$/.test(t) && Number.isFinite(Number(t)) ? Number(t) : REJECT),
};

/** One of `values`; `orUnset` says what leaving the variable unset does, for a setting without a default. */
export function oneOf<const T extends string>(values: readonly T[], options: { lowercase?: boolean; orUnset?: string } = {}): Kind<T> {
  return {
    expects: `one of ${values.join(', ')}${options.orUnset ? `, or unset ${options.orUnset}` : ''}`,
    parse: (t) => {
      const value = (options.lowercase ? t.toLowerCase() : t) as T;
      return values.includes(value) ? value : REJECT;
    },
  };
}

/**
 * Text of a form: `form` must match the whole value (read lower-cased with `lowercase`). For values another
 * service defines and keeps extending, where a list of today's values would refuse tomorrow's. `expects` should
 * give today's values as examples; `orUnset` as for oneOf.
 */
export function matching(form: RegExp, expects: string, options: { lowercase?: boolean; orUnset?: string } = {}): Kind<string> {
  return {
    expects: `${expects}${options.orUnset ? `, or unset ${options.orUnset}` : ''}`,
    parse: (t) => {
      const value = options.lowercase ? t.toLowerCase() : t;
      return form.test(value) ? value : REJECT;
    },
  };
}

/** A URL with one of these schemes (`'redis'`, `'https'`...); its credentials and query are never quoted. */
export function url(...schemes: string[]): Kind<string> {
  return {
    expects: `${schemes[0].startsWith('h') ? 'an' : 'a'} ${schemes.join(' or ')} URL`,
    parse: (t) => (hasScheme(t, schemes) ? t : REJECT),
    show: (t) => redactUrl(t) ?? t,
  };
}

/** The notification service: a URL, or a bare port meaning the service on this machine. */
export const urlOrPort: Kind<string> = {
  expects: 'an http(s) or ws(s) URL or a port number',
  parse: (t) => (/^\d+$/.test(t) ? `http://127.0.0.1:${t}` : hasScheme(t, ['http', 'https', 'ws', 'wss']) ? t : REJECT),
  show: (t) => redactUrl(t) ?? t,
};

/** Comma-separated values of `item`; empty entries are skipped. */
export function list<T>(item: Kind<T>, expects = `comma-separated values, each ${item.expects}`): Kind<T[]> {
  return {
    expects,
    parse: (t) => {
      const values = t
        .split(',')
        .map((entry) => entry.trim())
        .filter(Boolean)
        .map((entry) => item.parse(entry));
      return values.includes(REJECT) ? REJECT : (values as T[]);
    },
    show:
      item.show &&
      ((t) =>
        t
          .split(',')
          .map((entry) => item.show!(entry.trim()))
          .join(',')),
  };
}
