// A project that depends on vilref, as the README shows it: test/package.test.ts installs the packed
// tarball into a fresh project, compiles this file with `tsc --strict` against the installed types
// and runs it with the shared material's directory as its argument.
import { readFileSync } from "node:fs";
import { BertTokenizer, ViLReF, labelReport, preprocess } from "vilref";
import type { ModelConfigInput } from "vilref";
import { LABEL_IDS } from "vilref/labels";

const shared = process.argv[2] ?? "../shared";
const config = JSON.parse(readFileSync(`${shared}/fixtures/tiny-vit/config.json`, "utf8")) as ModelConfigInput;
await using model = await ViLReF.load(`${shared}/fixtures/tiny-vit/checkpoint.pt`, { config });
const size = model.config.image_resolution;
const image = await preprocess(`${shared}/data/DRIVE/test/images/01_test.tif`, { size });
const tokenizer = BertTokenizer.fromFile(`${shared}/vocab/chinese-bert-vocab.txt`);
const reports = ["右眼：后极部散在点片状出血及硬性渗出，考虑糖尿病视网膜病变。", "双眼豹纹状眼底，视盘周围萎缩弧。"];
const imageFeatures = await model.encodeImages({ data: image, shape: [1, 3, size, size] });
const textFeatures = await model.encodeTexts(tokenizer.encodeBatch(reports));
const similarity = await model.similarity(imageFeatures, textFeatures);
const { labels } = labelReport(reports[0]);
console.log(JSON.stringify({ similarity: [...similarity.data], labels, labelIds: LABEL_IDS.length }));
