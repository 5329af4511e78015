/**
 * After `jupyter labextension build`: ship install.json with the build, and
 * record the sources it was built from (sha256sum format), so a test can tell
 * when the committed build in jupyter_autoresearch/labextension is stale.
 */
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..', '..');
const output = path.join(root, 'jupyter_autoresearch', 'labextension');

function walk(dir) {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap(entry => {
    const relative = `${dir}/${entry.name}`;
    return entry.isDirectory() ? walk(relative) : [relative];
  });
}

const sources = [
  ...walk('labextension/src').filter(f => !f.includes('/__tests__/')),
  ...walk('labextension/style'),
  'labextension/package.json',
  'labextension/package-lock.json',
  'labextension/tsconfig.json',
  'install.json'
].sort();
const lines = sources.map(file => {
  const digest = crypto.createHash('sha256').update(fs.readFileSync(path.join(root, file))).digest('hex');
  return `${digest}  ${file}\n`;
});
fs.copyFileSync(path.join(root, 'install.json'), path.join(output, 'install.json'));
fs.writeFileSync(path.join(output, 'sources.sha256'), lines.join(''));
